"""Embedding cache: pooled train/val/test embeddings of a task, keyed by everything that made them.

The cache key is the backbone id and weights hash, pooling, max length, input size, the prepared
data's checksum and a cache format version. A cache whose key differs is rebuilt, never trusted
because a file exists (CLIP_benchmark's lesson).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .backbones import Encoder, encode
from .data import SPLITS, TaskData
from .io import read_json, write_json, write_npz

CACHE_VERSION = 1


def cache_key(encoder: Encoder, data: TaskData) -> dict[str, Any]:
    return {
        "cache_version": CACHE_VERSION,
        "model_id": encoder.model_id,
        "weights_md5": encoder.weights_hash(),
        "pooling": getattr(encoder, "pooling", "global_average"),
        "max_length": getattr(encoder, "max_length", None),
        "image_size": getattr(encoder, "image_size", None),
        "data_checksum": data.source.get("checksum"),
        "dim": encoder.dim,
    }


def ensure_embeddings(encoder: Encoder, data: TaskData, out_dir: Path, *, batch_size: int = 64,
                      device: str = "cpu", progress: bool = True) -> tuple[dict[str, np.ndarray], bool]:
    """Return `{split: (N, D) float32}`; compute and write them unless a cache with the same key exists.

    The second value says whether the embeddings were (re)computed.
    """
    out_dir = Path(out_dir)
    key = cache_key(encoder, data)
    meta_path, arrays_path = out_dir / "meta.json", out_dir / "embeddings.npz"
    if meta_path.is_file() and arrays_path.is_file() and read_json(meta_path).get("key") == key:
        return load_embeddings(out_dir), False
    arrays = {s: encode(encoder, data.splits[s].x, batch_size=batch_size, device=device, progress=progress,
                        desc=f"embed {data.name}/{s}") for s in SPLITS}
    write_npz(arrays_path, **arrays)
    write_json(meta_path, {"key": key, "counts": {s: len(a) for s, a in arrays.items()}})
    return arrays, True


def load_embeddings(out_dir: Path, *, expect_checksum: str | None = None) -> dict[str, np.ndarray]:
    """Read cached embeddings; refuse ones made from other data than `expect_checksum`."""
    out_dir = Path(out_dir)
    meta_path = out_dir / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found; run the embed stage first: dvc repro embed")
    meta = json.loads(meta_path.read_text())
    if expect_checksum is not None and meta["key"]["data_checksum"] != expect_checksum:
        raise RuntimeError(f"{out_dir}: embeddings were made from other data ({meta['key']['data_checksum']} != "
                           f"{expect_checksum}); re-run the embed stage: dvc repro embed")
    with np.load(out_dir / "embeddings.npz") as npz:
        return {s: npz[s] for s in SPLITS}
