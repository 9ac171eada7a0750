"""Partial fine-tuning (MAE's "partial" protocol): only the top k blocks of the backbone and the head train.

The frozen lower blocks see every item once: `build_feature_bank` runs them in inference mode and keeps
their outputs (text: hidden states (T_i, D) per item without padding, plus nothing else — the attention
mask is all ones over the kept tokens; image: feature maps (C, h, w)). `PartialEncoder` holds only the top
k blocks (and the pooling), reads items from a bank, and pools to (B, D) exactly as the whole encoder does:
``PartialEncoder(bank(items)) == Encoder(items)`` at initialisation, to float rounding. Training,
evaluation and shift scoring all read banks, so a step costs the top k blocks only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .backbones import Encoder, ImageEncoder, TextEncoder


class FeatureBank:
    """Frozen lower-block outputs of a list of items; indexable by an index array like the raw items."""

    def __init__(self, rows: list[np.ndarray] | np.ndarray, kind: str) -> None:
        self.rows = rows
        self.kind = kind

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> FeatureBank:
        if isinstance(index, slice):
            index = np.arange(len(self.rows))[index]
        index = np.atleast_1d(np.asarray(index))
        if self.kind == "text":
            return FeatureBank([self.rows[int(i)] for i in index], self.kind)
        return FeatureBank(self.rows[index], self.kind)

    def lengths(self) -> np.ndarray:
        if self.kind == "text":
            return np.asarray([len(r) for r in self.rows], np.int64)
        return np.ones(len(self.rows), np.int64)


def _text_layers(encoder: TextEncoder) -> nn.ModuleList:
    model = encoder.model
    layers = getattr(getattr(model, "encoder", None), "layer", None) or getattr(model, "layers", None)
    if layers is None:
        raise ValueError(f"{encoder.model_id}: partial fine-tuning supports BERT-like text models "
                         "(model.encoder.layer); use full, lp_ft or lora for this backbone")
    return layers


def _image_blocks(encoder: ImageEncoder) -> nn.ModuleList:
    if encoder.arch == "efficientnet":
        return encoder.model._blocks
    model = encoder.model
    layers = getattr(model, "layers", None) or getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"{encoder.model_id}: partial fine-tuning supports EfficientNet and ViT-like models "
                         "(model.layers or model.encoder.layer); use full, lp_ft or lora for this backbone")
    return layers


def n_blocks(encoder: Encoder) -> int:
    return len(_text_layers(encoder)) if encoder.kind == "text" else len(_image_blocks(encoder))


def _bidirectional_mask(model: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=attention_mask)


@torch.inference_mode()
def build_feature_bank(encoder: Encoder, items: Sequence[Any], *, top_k: int, batch_size: int = 64,
                       progress: bool = False, desc: str = "lower blocks") -> FeatureBank:
    """Outputs of the frozen blocks below the top `top_k`, one entry per item, in input order."""
    from tqdm import tqdm  # plain text bars (tqdm.auto warns with a local path in rendered notebooks)

    from .backbones import length_sorted_batches

    cut = n_blocks(encoder) - top_k
    if not 0 < top_k <= n_blocks(encoder):
        raise ValueError(f"finetune.partial_blocks: bad value {top_k}; allowed values: 1..{n_blocks(encoder)} "
                         f"for {encoder.model_id}")
    encoder.eval()
    batches = list(length_sorted_batches(encoder.lengths(items), batch_size))
    if encoder.kind == "text":
        rows: list[np.ndarray] = [np.empty(0)] * len(items)
        for index in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
            batch = encoder.prepare([items[i] for i in index])
            hidden, mask = _text_lower(encoder, batch["input_ids"], batch["attention_mask"], cut)
            lengths = mask.sum(1).tolist()
            for j, i in enumerate(index):
                rows[int(i)] = hidden[j, :lengths[j]].float().numpy().copy()  # (T_i, D)
        return FeatureBank(rows, "text")
    out = None
    for index in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
        chunk = items[index] if not isinstance(items, list) else [items[i] for i in index]
        pixels = encoder.prepare(chunk)["pixels"]
        feats = _image_lower(encoder, pixels, cut).float().numpy()  # (B, C, h, w)
        if out is None:
            out = np.zeros((len(items), *feats.shape[1:]), np.float32)
        out[index] = feats
    assert out is not None
    return FeatureBank(out, "image")


def _text_lower(encoder: TextEncoder, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                cut: int) -> tuple[torch.Tensor, torch.Tensor]:
    model = encoder.model
    hidden = model.embeddings(input_ids=input_ids)  # (B, T, D)
    mask = _bidirectional_mask(model, hidden, attention_mask)
    for layer in _text_layers(encoder)[:cut]:
        hidden = _layer_out(layer(hidden, attention_mask=mask))
    return hidden, attention_mask


def _layer_out(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _image_lower(encoder: ImageEncoder, pixels: torch.Tensor, cut: int) -> torch.Tensor:
    import torch.nn.functional as F

    if pixels.shape[-1] != encoder.image_size or pixels.shape[-2] != encoder.image_size:
        pixels = F.interpolate(pixels, size=(encoder.image_size, encoder.image_size), mode="bilinear",
                               align_corners=False)
    x = (pixels - encoder.mean) / encoder.std
    model = encoder.model
    if encoder.arch != "efficientnet":  # ViT-like: patch embeddings, then the lower layers
        hidden = model.embeddings(x)
        for layer in _image_blocks(encoder)[:cut]:
            hidden = _layer_out(layer(hidden))
        return hidden
    x = model._swish(model._bn0(model._conv_stem(x)))
    for block in _image_blocks(encoder)[:cut]:
        x = block(x, drop_connect_rate=None)  # eval mode: drop-connect is off anyway
    return x


class PartialEncoder(Encoder):
    """The top k blocks of `base` (shared modules, not copies) reading a `FeatureBank`; pools like `base`."""

    def __init__(self, base: Encoder, top_k: int) -> None:
        super().__init__()
        self.kind = base.kind
        self.dim = base.dim
        self.top_k = top_k
        self.model_id = f"{base.model_id}|top{top_k}"
        self.cut = n_blocks(base) - top_k
        if base.kind == "text":
            assert isinstance(base, TextEncoder)
            self.config = base.model.config
            self.blocks = nn.ModuleList(list(_text_layers(base)[self.cut:]))
            self.pooling = base.pooling
            self.head_layers = nn.ModuleList()
        else:
            assert isinstance(base, ImageEncoder)
            model = base.model
            self.arch = base.arch
            self.blocks = nn.ModuleList(list(_image_blocks(base)[self.cut:]))
            self.n_total = n_blocks(base)
            if base.arch == "efficientnet":
                self.head_layers = nn.ModuleList([model._conv_head, model._bn1])
                self._swish = model._swish
                self.drop_connect = float(model._global_params.drop_connect_rate or 0.0)
            else:
                pooler = getattr(model, "pooler", None)
                self.head_layers = nn.ModuleList([model.layernorm, *([pooler] if pooler is not None else [])])

    def prepare(self, items: FeatureBank) -> dict[str, torch.Tensor]:
        if self.kind == "image":
            return {"features": torch.as_tensor(np.asarray(items.rows))}
        lengths = [len(r) for r in items.rows]
        width = max(lengths)
        hidden = np.zeros((len(lengths), width, self.dim), np.float32)
        mask = np.zeros((len(lengths), width), np.int64)
        for i, row in enumerate(items.rows):
            hidden[i, :len(row)] = row
            mask[i, :len(row)] = 1
        return {"hidden": torch.from_numpy(hidden), "attention_mask": torch.from_numpy(mask)}

    def lengths(self, items: FeatureBank) -> np.ndarray:
        return items.lengths()

    def forward(self, hidden: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                features: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "text":
            assert hidden is not None and attention_mask is not None
            mask = _bidirectional_mask(self, hidden, attention_mask)
            for layer in self.blocks:
                hidden = _layer_out(layer(hidden, attention_mask=mask))
            if self.pooling == "cls":
                return hidden[:, 0]
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        assert features is not None
        x = features
        if self.arch != "efficientnet":
            for layer in self.blocks:
                x = _layer_out(layer(x))
            x = self.head_layers[0](x)  # final layer norm (B, T, D)
            return self.head_layers[1](x).flatten(1) if len(self.head_layers) > 1 else x.mean(1)
        for offset, block in enumerate(self.blocks):
            rate = self.drop_connect * float(self.cut + offset) / self.n_total if self.drop_connect else None
            x = block(x, drop_connect_rate=rate)
        conv_head, bn1 = self.head_layers
        x = self._swish(bn1(conv_head(x)))  # (B, 1280, h, w)
        return x.mean(dim=(2, 3))

    def lora_targets(self) -> list[str]:
        raise ValueError("LoRA is not combined with partial fine-tuning; use method 'lora' or 'partial'")
