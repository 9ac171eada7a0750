"""Encoders: pooling, the from_pretrained path with tiny saved models, embedding cache keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedtune.backbones import BackboneError, encode, load_backbone
from embedtune.datatypes import Split, TaskData
from embedtune.embeddings import ensure_embeddings


def test_mean_pooling_ignores_padding(tiny_text_model_dir) -> None:
    enc = load_backbone(str(tiny_text_model_dir), kind="text", max_length=16)
    short = "good movie"
    alone = encode(enc, [short], batch_size=1, progress=False)
    padded = encode(enc, [short, "the movie plot was quite a film story good"], batch_size=2, progress=False)
    assert np.allclose(alone[0], padded[0], atol=1e-5)  # length sorting + mask: padding changes nothing


def test_cls_pooling_differs_from_mean(tiny_text_model_dir) -> None:
    mean = load_backbone(str(tiny_text_model_dir), kind="text", pooling="mean")
    cls = load_backbone(str(tiny_text_model_dir), kind="text", pooling="cls")
    a = encode(mean, ["good film"], progress=False)
    b = encode(cls, ["good film"], progress=False)
    assert a.shape == b.shape == (1, 32) and not np.allclose(a, b)


def test_image_encoder_grey_to_rgb_and_resize(tiny_image_model_dir) -> None:
    enc = load_backbone(str(tiny_image_model_dir), kind="image", image_size=16)
    grey = np.random.default_rng(0).integers(0, 255, (3, 28, 28)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    assert np.allclose(encode(enc, grey, progress=False), encode(enc, rgb, progress=False), atol=1e-5)
    assert enc.prepare(grey)["pixels"].shape == (3, 3, 28, 28)


def test_packaged_backbones_load_offline() -> None:
    text = load_backbone("pkg:all-minilm-l6-v2", kind="text", max_length=32)
    targets = text.lora_targets()  # every attention and MLP projection of the 6 blocks, not the pooler
    assert text.dim == 384 and len(targets) == 36 and not any("pooler" in t for t in targets)
    assert {t.rsplit(".", 1)[-1] for t in targets} == {"query", "key", "value", "dense"}
    image = load_backbone("pkg:efficientnet-lite0", kind="image", image_size=32)
    out = encode(image, np.zeros((2, 28, 28), np.uint8), progress=False)
    assert out.shape == (2, 1280) and np.isfinite(out).all()


def test_unknown_backbone_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(BackboneError, match="unknown packaged backbone"):
        load_backbone("pkg:resnet", kind="image")
    with pytest.raises(BackboneError, match="could not load text backbone"):
        load_backbone(str(tmp_path / "missing"), kind="text")


def _toy_task(texts: list[str], checksum: str) -> TaskData:
    split = Split(x=texts, y=np.zeros(len(texts), np.int64))
    return TaskData(name="t", kind="text", multi_label=False, label_names=["a", "b"],
                    splits={"train": split, "val": split, "test": split}, source={"checksum": checksum})


def test_embedding_cache_reused_and_rebuilt_when_stale(tiny_text_model_dir, tmp_path) -> None:
    enc = load_backbone(str(tiny_text_model_dir), kind="text")
    data = _toy_task(["good film", "bad plot"], "c1")
    first, built = ensure_embeddings(enc, data, tmp_path, progress=False)
    assert built
    _, built = ensure_embeddings(enc, data, tmp_path, progress=False)
    assert not built  # same key: reused
    _, built = ensure_embeddings(enc, _toy_task(["good film", "awful"], "c2"), tmp_path, progress=False)
    assert built  # data changed
    with torch.no_grad():
        next(enc.parameters()).add_(0.1)
    again, built = ensure_embeddings(enc, _toy_task(["good film", "awful"], "c2"), tmp_path, progress=False)
    assert built  # weights changed
