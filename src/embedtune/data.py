"""Data layer, pipeline side: canonical splits, deduplication, caps, budgets, and reading what prepare wrote.
Reading a task's raw source (eight loaders, offline first) lives in `loaders`.

Canonical form (what every later stage reads):
- text tasks: ``{train,val,test}.parquet`` with columns ``text`` and ``label`` (int) or ``labels``
  (list of ints, multi-label);
- image tasks: ``splits.npz`` with ``{train,val,test}_images`` (uint8, N×H×W or N×H×W×C) and
  ``{train,val,test}_labels``;
- ``card.json``: source, checksums, licence, counts per split and label, duplicates removed.

`build_prepared` computes everything in memory and `write_prepared` writes a whole folder at once (into a
temporary sibling, renamed into place), so a stage that fails validation leaves the old folder untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .datatypes import SPLITS, DataError, Split, TaskData, read_npz
from .io import md5_file, write_json, write_npz, write_parquet
from .params import ParamsError, TaskParams

# MedMNIST v2 published checksums and download addresses (medmnist/info.py, Zenodo record 10519652).
# ----------------------------------------------------------------------------------- prepare


def item_keys(split: Split) -> list[str]:
    """Exact-duplicate keys: the text itself, or the md5 of an image's bytes."""
    if isinstance(split.x, list):
        return list(split.x)
    import hashlib

    return [hashlib.md5(np.ascontiguousarray(im).tobytes()).hexdigest() for im in split.x]


def deduplicate(data: TaskData) -> dict[str, int]:
    """Remove cross-split exact duplicates by a fixed rule: test keeps its items, val loses those also in
    test, train loses those also in val or test. Returns how many rows each split lost."""
    keys = {s: item_keys(data.splits[s]) for s in SPLITS}
    removed = {}
    seen = set(keys["test"])
    for split in ("val", "train"):
        keep = np.asarray([k not in seen for k in keys[split]])
        removed[split] = int((~keep).sum())
        data.splits[split] = data.splits[split].take(np.flatnonzero(keep))
        seen |= set(keys[split])
    removed["test"] = 0
    return removed


def cross_split_duplicates(data: TaskData) -> int:
    keys = {s: set(item_keys(data.splits[s])) for s in SPLITS}
    return len(keys["train"] & keys["val"]) + len(keys["train"] & keys["test"]) + len(keys["val"] & keys["test"])


def cap_split(split: Split, limit: int | None, *, seed: int) -> Split:
    """A stratified, seeded subsample of at most `limit` rows (used by the smoke profile)."""
    if limit is None or len(split) <= limit:
        return split
    order = stratified_order(split.y, seed=seed, limit=limit)
    return split.take(np.sort(order[:limit]))


def label_counts(y: np.ndarray, names: list[str]) -> dict[str, int]:
    if y.ndim == 2:
        counts = {n: int(c) for n, c in zip(names, y.sum(0))}
        counts["none"] = int((y.sum(1) == 0).sum())
        return counts
    return {n: int((y == i).sum()) for i, n in enumerate(names)}


def build_prepared(task_name: str, task: TaskParams, *, data_root: Path, max_train: int | None = None,
                   max_eval: int | None = None) -> tuple[TaskData, dict[str, Any]]:
    """Load, deduplicate and cap a task's splits in memory; return them with their data card (no checksum
    yet: it is taken from the written files). Writes nothing."""
    from .loaders import load_raw

    data = load_raw(task_name, task, data_root)
    official = {s: len(data.splits[s]) for s in SPLITS}
    dup_before = cross_split_duplicates(data)
    removed = deduplicate(data)
    for split, limit in (("train", max_train), ("val", max_eval), ("test", max_eval)):
        data.splits[split] = cap_split(data.splits[split], limit, seed=0)
    card = {
        "task": task_name, "kind": data.kind, "multi_label": data.multi_label, "label_names": data.label_names,
        **data.source,
        "source_counts": official,
        "cross_split_duplicates": dup_before,
        "duplicates_removed": removed,
        "dedupe_rule": "test keeps all; val drops items also in test; train drops items also in val or test",
        "caps": {"max_train": max_train, "max_eval": max_eval},
        "counts": {s: len(data.splits[s]) for s in SPLITS},
        "label_counts": {s: label_counts(data.splits[s].y, data.label_names) for s in SPLITS},
    }
    return data, card


def write_prepared(data: TaskData, card: dict[str, Any], out_dir: Path,
                   extra_json: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write splits, ``card.json`` (with the splits' checksum) and the files `extra_json(card)` names
    (file name → JSON object) into a temporary sibling of `out_dir`, then swap it into place: readers see
    the old folder or the new one, never a mix."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_splits(data, staging)
        card = {**card, "checksum": splits_checksum(staging, data.kind)}
        write_json(staging / "card.json", card)
        for name, obj in (extra_json(card) if extra_json else {}).items():
            write_json(staging / name, obj)
        os.chmod(staging, 0o755)  # mkdtemp makes it 0o700
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        if old.exists():
            os.replace(old, out_dir)  # put the previous folder back
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return card


def prepare_task(task_name: str, task: TaskParams, *, data_root: Path, out_dir: Path,
                 max_train: int | None = None, max_eval: int | None = None) -> dict[str, Any]:
    """Load, deduplicate, cap and write a task's canonical splits and data card; return the card."""
    data, card = build_prepared(task_name, task, data_root=data_root, max_train=max_train, max_eval=max_eval)
    return write_prepared(data, card, out_dir)


def write_splits(data: TaskData, out_dir: Path) -> None:
    if data.kind == "image":
        arrays = {}
        for s in SPLITS:
            arrays[f"{s}_images"] = data.splits[s].x
            arrays[f"{s}_labels"] = data.splits[s].y
        write_npz(out_dir / "splits.npz", **arrays)
        return
    for s in SPLITS:
        part = data.splits[s]
        frame = pd.DataFrame({"text": part.x})
        if data.multi_label:
            frame["labels"] = [np.flatnonzero(row).tolist() for row in part.y]
        else:
            frame["label"] = part.y
        if part.groups is not None:
            frame["group"] = part.groups
        write_parquet(out_dir / f"{s}.parquet", frame)


def splits_checksum(out_dir: Path, kind: str) -> str:
    import hashlib

    files = ["splits.npz"] if kind == "image" else [f"{s}.parquet" for s in SPLITS]
    return hashlib.md5("".join(md5_file(out_dir / f) for f in files).encode()).hexdigest()


def load_prepared(out_dir: str | Path) -> TaskData:
    """Read the canonical splits that `prepare_task` wrote."""
    out_dir = Path(out_dir)
    card_path = out_dir / "card.json"
    if not card_path.is_file():
        raise DataError(f"{card_path} not found; run the prepare stage first: dvc repro prepare")
    import json

    card = json.loads(card_path.read_text(encoding="utf-8"))
    splits = {}
    if card["kind"] == "image":
        arrays = read_npz(out_dir / "splits.npz")
        splits = {s: Split(x=arrays[f"{s}_images"], y=arrays[f"{s}_labels"]) for s in SPLITS}
    else:
        n_labels = len(card["label_names"])
        for s in SPLITS:
            frame = pd.read_parquet(out_dir / f"{s}.parquet")
            if card["multi_label"]:
                y = np.zeros((len(frame), n_labels), np.int8)
                for i, ids in enumerate(frame["labels"]):
                    y[i, list(ids)] = 1
            else:
                y = frame["label"].to_numpy(np.int64)
            splits[s] = Split(x=frame["text"].tolist(), y=y,
                              groups=frame["group"].to_numpy() if "group" in frame else None)
    return TaskData(name=card["task"], kind=card["kind"], multi_label=card["multi_label"],
                    label_names=card["label_names"], splits=splits, source=card)


# ----------------------------------------------------------------------------------- budgets


def stratified_order(y: np.ndarray, *, seed: int, limit: int | None = None) -> np.ndarray:
    """A seeded ordering of rows whose every prefix is (close to) stratified.

    Single-label: one row of each class first, then at each step the class furthest below its share.
    Multi-label (y is N×L): one positive of every label first (rarest label first), then at each step
    the label — or the label-free "none" group — furthest below its share (greedy iterative
    stratification). Prefixes of this order are the nested label budgets.
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    groups = _strata(y)  # (G, N) bool membership, a row can be in several (multi-label)
    share = groups.sum(1) / max(groups.sum(), 1)
    pools = [list(rng.permutation(np.flatnonzero(g))) for g in groups]
    used = np.zeros(n, bool)
    taken = np.zeros(len(groups))
    order: list[int] = []

    def take_from(g: int) -> bool:
        pool = pools[g]
        while pool:
            i = pool.pop()
            if not used[i]:
                used[i] = True
                order.append(i)
                taken[:] += groups[:, i]
                return True
        return False

    for g in np.argsort(groups.sum(1), kind="stable"):  # rarest first: every label present early
        if taken[g] == 0:
            take_from(g)
    while len(order) < (n if limit is None else min(limit, n)):
        deficit = share * (taken.sum() + 1) - taken
        for g in np.argsort(-deficit, kind="stable"):
            if take_from(g):
                break
        else:
            break
    rest = np.flatnonzero(~used)
    return np.concatenate([np.asarray(order, np.int64), rng.permutation(rest)]).astype(np.int64)


def _strata(y: np.ndarray) -> np.ndarray:
    if y.ndim == 1:
        classes = np.unique(y)
        return np.stack([y == c for c in classes])
    none = y.sum(1) == 0
    return np.concatenate([y.T.astype(bool), none[None]])


def budget_subsets(y: np.ndarray, *, sizes: tuple[int | str, ...], seeds: tuple[int, ...]) -> dict[str, dict[str, list[int]]]:
    """Nested stratified train subsets: ``{seed: {size: sorted row indices}}``.

    For one seed, the subset of each budget contains the subsets of all smaller budgets (prefixes of
    one stratified order). Every method reads the same subsets, so comparisons are paired.
    """
    n = len(y)
    resolved = sorted({n if s == "all" else int(s) for s in sizes})
    if resolved[-1] > n:
        raise ParamsError(f"budgets.sizes: budget {resolved[-1]} is larger than the train split ({n} rows); "
                          f"use budgets <= {n} or 'all'")
    n_strata = len(_strata(y))
    if y.ndim == 1 and resolved[0] < n_strata:
        raise ParamsError(f"budgets.sizes: budget {resolved[0]} is smaller than the number of classes ({n_strata}); "
                          "every class needs at least one example")
    subsets: dict[str, dict[str, list[int]]] = {}
    for seed in seeds:
        order = stratified_order(y, seed=seed, limit=resolved[-1])
        subsets[str(seed)] = {str(size): sorted(order[:size].tolist()) for size in resolved}
        if y.ndim == 1:
            for size, idx in subsets[str(seed)].items():
                missing = sorted(set(np.unique(y).tolist()) - set(np.unique(y[idx]).tolist()))
                if missing:
                    raise ParamsError(f"budgets.sizes: budget {size} (seed {seed}) lacks class(es) {missing}")
    return subsets


def selection_index(data: TaskData, max_val: int | None) -> np.ndarray:
    """Row indices (into the validation split) every method selects on: the whole split, or one seeded
    stratified subset of `max_val` rows, the same for classic, probe and every tuned method."""
    y = data.splits["val"].y
    if max_val is None or len(y) <= max_val:
        return np.arange(len(y))
    return np.sort(stratified_order(y, seed=0, limit=max_val)[:max_val])
