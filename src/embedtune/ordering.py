"""The order a training run sees its items: seeded permutations, one per pass (`training_order`); text passes
in small length-sorted groups (`length_grouped_order`); each DDP rank's shard of a micro-batch (`rank_shard`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import nn


def training_order(n: int, plan: Any, *, config: Any, lengths: np.ndarray | None) -> np.ndarray:
    """Item indices for the whole run: seeded permutations of range(n), one per pass, cut to the planned
    number of micro-batches; text passes are length-grouped (`length_grouped_order`)."""
    items_needed = plan.total_steps * config.batch_size * config.grad_accum
    passes = math.ceil(items_needed / n) if n else 0
    rng = np.random.default_rng([config.seed, 7919])
    order = np.concatenate([rng.permutation(n) for _ in range(passes)])
    if lengths is not None:
        order = length_grouped_order(order, lengths, pass_size=n, micro_batch=config.batch_size,
                                     group=config.length_grouping, rng=rng)
    return order[:items_needed]


def raw_lengths(model: nn.Module, items: Any) -> np.ndarray | None:
    """Token lengths of text items (None for images: all the same size, nothing to group)."""
    encoder = model.encoder
    return encoder.lengths(items) if encoder.kind == "text" else None


def length_grouped_order(order: np.ndarray, lengths: np.ndarray, *, pass_size: int, micro_batch: int, group: int,
                         rng: np.random.Generator) -> np.ndarray:
    """Reorder each pass of a shuffled `order` so that micro-batches hold items of similar token length.

    Each pass (``pass_size`` items of one permutation) is cut into groups of ``group`` micro-batches; a group
    is sorted by length, cut into micro-batches, and those micro-batches are shuffled. The group shrinks to
    half a pass when a pass is short, so batch composition stays random from pass to pass; a group never
    spans two passes (no item twice in a micro-batch). Padding falls (MiniLM on Rotten Tomatoes, batch 16:
    processed tokens 1.77× the real ones at group 1, 1.23× at group 4) while every item is still seen
    once per pass. The pass's short final micro-batch (if any) stays last, where an ungrouped pass has it.
    """
    batches_per_pass = math.ceil(pass_size / micro_batch)
    group = max(1, min(group, batches_per_pass // 2))
    if group == 1:
        return order
    out = []
    for start in range(0, len(order), pass_size):
        one_pass = order[start:start + pass_size]
        for g in range(0, len(one_pass), group * micro_batch):
            chunk = one_pass[g:g + group * micro_batch]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            batches = [chunk[i:i + micro_batch] for i in range(0, len(chunk), micro_batch)]
            full = [b for b in batches if len(b) == micro_batch]
            out.extend(full[i] for i in rng.permutation(len(full)))
            out.extend(b for b in batches if len(b) < micro_batch)  # a pass's short batch stays its last
    return np.concatenate(out)


def rank_shard(index: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank `rank`'s items of one micro-batch of item indices: positions rank, rank+world, … A batch with
    fewer than `world` items is first padded by repeating it, so every rank has at least one item."""
    if world <= 1:
        return index
    if len(index) < world:
        index = np.resize(index, world)  # repeats the batch's items cyclically
    return index[rank::world]
