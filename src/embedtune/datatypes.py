"""Data types every layer shares: a split, a task's splits, the data error, and splitting rules that need
no source (a grouped random split, a stratified validation carve-out). `loaders` and `data` both build on
this module, so neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """Missing, truncated or malformed data; the message names the file and how to get or fix it."""


@dataclass
class Split:
    x: list[str] | np.ndarray  # texts, or uint8 images (N, H, W) / (N, H, W, C)
    y: np.ndarray  # (N,) int64 class ids, or (N, L) int8 multi-hot
    groups: np.ndarray | None = None  # (N,) group ids kept within one split (e.g. movie)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> Split:
        x = [self.x[i] for i in index] if isinstance(self.x, list) else self.x[index]
        return Split(x=x, y=self.y[index], groups=None if self.groups is None else self.groups[index])


@dataclass
class TaskData:
    name: str
    kind: str  # "text" | "image"
    multi_label: bool
    label_names: list[str]
    splits: dict[str, Split]
    source: dict[str, Any] = field(default_factory=dict)  # provenance for the data card

    @property
    def n_labels(self) -> int:
        return len(self.label_names)


# ----------------------------------------------------------------------------------- splits


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise DataError(f"{path} is not a readable .npz ({type(exc).__name__}: {exc}); it is truncated or corrupted: "
                        "delete it and fetch it again") from exc


def group_split(whole: Split, *, fractions: tuple[float, float, float], seed: int) -> dict[str, Split]:
    """Split into train/val/test; rows of one group never land in two splits.

    Groups are shuffled with `seed` and assigned greedily to the split furthest below its target row
    count. Without groups every row is its own group (a plain random split).
    """
    groups = whole.groups if whole.groups is not None else np.arange(len(whole)).astype(str)
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    targets = np.asarray(fractions) * len(whole)
    filled = np.zeros(3)
    assign = np.empty(len(uniq), np.int64)
    for g in order:
        k = int(np.argmax(targets - filled))
        assign[g] = k
        filled[k] += counts[g]
    row_split = assign[inverse]
    return {s: whole.take(np.flatnonzero(row_split == k)) for k, s in enumerate(SPLITS)}


def carve_val(train: Split, *, fraction: float, seed: int) -> tuple[Split, Split]:
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in np.unique(train.y):
        idx = np.flatnonzero(train.y == c)
        val_idx.extend(rng.choice(idx, size=max(1, int(round(fraction * len(idx)))), replace=False))
    mask = np.zeros(len(train), bool)
    mask[val_idx] = True
    return train.take(np.flatnonzero(~mask)), train.take(np.flatnonzero(mask))
