"""Cost accounting shared by every method: wall time, peak memory, parameters, FLOPs, device, price.

Peak memory is the process resident set size (RSS, MiB) sampled every 20 ms during the measured block
on CPU, or the peak allocated CUDA memory (MiB) on a GPU. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` on one representative step, multiplied by the steps.
"""

from __future__ import annotations

import math
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import psutil
import torch
from torch import nn


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_mem_mib: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


@contextmanager
def measure(device: torch.device | str = "cpu") -> Iterator[Measurement]:
    """Time a block and record its peak memory (RSS on CPU, allocated CUDA memory on GPU)."""
    device = torch.device(device)
    result = Measurement()
    stop = threading.Event()
    process = psutil.Process()
    peak = [process.memory_info().rss]

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        result.seconds = time.perf_counter() - start
        stop.set()
        thread.join()
        peak[0] = max(peak[0], process.memory_info().rss)
        if device.type == "cuda":
            result.peak_mem_mib = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            result.peak_mem_mib = peak[0] / 2**20


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def conv_backward_flops(grad_out_shape: Any, x_shape: Any, w_shape: Any, _bias: Any, _stride: Any, _padding: Any,
                        _dilation: Any, transposed: bool, _output_padding: Any, _groups: Any, output_mask: Any,
                        out_shape: Any = None, **kwargs: Any) -> int:
    """A convolution's backward: each requested gradient (input, weight) costs one forward, 2 × N × output
    positions × prod(weight shape), which counts groups through the weight's C_in / groups. PyTorch's own
    formula transposes the shapes for the weight gradient and drops the groups (a 256-channel depthwise conv
    counted ~257× its forward)."""
    positions = math.prod(x_shape[2:]) if transposed else math.prod(grad_out_shape[2:])
    forward = 2 * int(x_shape[0]) * positions * math.prod(w_shape)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def cpu_attention_flops(query_shape: Any, key_shape: Any, value_shape: Any, *_args: Any, out_shape: Any = None,
                        **_kwargs: Any) -> int:
    """The CPU attention kernel's forward: q·kᵀ and scores·v, PyTorch's formula for its GPU kernels."""
    from torch.utils.flop_counter import sdpa_flop_count

    return int(sdpa_flop_count(query_shape, key_shape, value_shape))


def cpu_attention_backward_flops(grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any,
                                 *_args: Any, out_shape: Any = None, **_kwargs: Any) -> int:
    """The CPU attention kernel's backward (scores recomputed, then the four gradient products)."""
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return int(sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape))


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of `step` (forward and backward if it runs both), via FlopCounterMode with the
    convolution backward counted by `conv_backward_flops` and the CPU attention kernel by PyTorch's own
    attention formulas."""
    from torch.utils.flop_counter import FlopCounterMode

    # on CPU, scaled_dot_product_attention runs a kernel FlopCounterMode has no formula for (it counted 0: a
    # text backbone's attention scores were missing); it is the same attention as the GPU kernels it counts
    mapping = {torch.ops.aten.convolution_backward: conv_backward_flops,
               torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops,
               torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_attention_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        step()
    return int(counter.get_total_flops())


def _row_lengths(shapes: list[tuple[int, ...]]) -> list[int] | None:
    """The one length in which single-row batch shapes differ (a text row's token count), or None when they
    differ in more than one way (or not at all)."""
    varying = [i for i in range(len(shapes[0])) if len({s[i] for s in shapes}) > 1]
    if not varying or any(len({s[i] for i in varying}) != 1 for s in shapes):
        return None
    return [s[varying[0]] for s in shapes]


def _quadratic_at(points: list[tuple[int, int]], x: int) -> Fraction:
    """The quadratic through three (length, FLOPs) points, evaluated exactly (Lagrange form) at `x`."""
    total = Fraction(0)
    for i, (xi, yi) in enumerate(points):
        term = Fraction(yi)
        for j, (xj, _) in enumerate(points):
            if j != i:
                term *= Fraction(x - xj, xi - xj)
        total += term
    return total


def mean_row_flops(count: Callable[[dict[str, torch.Tensor]], int], batches: list[dict[str, torch.Tensor]]
                   ) -> float:
    """Mean of `count` over single-row batches, counting each distinct shape once (FLOPs depend on shapes
    only). When the shapes differ in one length alone (tokens), FlopCounterMode's count is a quadratic in it
    (matmuls ∝ L, attention ∝ L²): three lengths fix the curve, two more check it, and a failed check
    falls back to counting every length — so the result equals counting every row."""
    groups: dict[tuple[int, ...], list[dict[str, torch.Tensor]]] = {}
    for batch in batches:
        shape = tuple(d for name in sorted(batch) for d in (len(batch[name].shape), *batch[name].shape))
        groups.setdefault(shape, []).append(batch)
    shapes = list(groups)
    counted: dict[tuple[int, ...], int] = {}

    def flops_of(shape: tuple[int, ...]) -> int:
        if shape not in counted:
            counted[shape] = count(groups[shape][0])
        return counted[shape]

    lengths = _row_lengths(shapes) if len(shapes) >= 5 else None
    if lengths is not None:
        order = sorted(range(len(shapes)), key=lambda i: lengths[i])
        anchors = [(lengths[i], flops_of(shapes[i])) for i in (order[0], order[len(order) // 2], order[-1])]
        checks = {order[len(order) // 4], order[(3 * len(order)) // 4]} - {order[0], order[len(order) // 2], order[-1]}
        if all(_quadratic_at(anchors, lengths[i]) == flops_of(shapes[i]) for i in checks):
            total = sum(_quadratic_at(anchors, lengths[i]) * len(groups[s]) for i, s in enumerate(shapes))
            return float(total) / len(batches)
    return sum(flops_of(s) * len(groups[s]) for s in shapes) / len(batches)


def encoder_flops_per_row(encoder: nn.Module, items: Any, *, n: int = 32) -> float:
    """The frozen backbone's forward FLOPs per row: the first `n` rows each counted alone, so a text row
    counts its own tokens (no padding to a batch's longest), averaged (`mean_row_flops`)."""
    chosen = list(items[:n]) if not isinstance(items, list) else items[:n]
    if not chosen:
        return 0.0
    batches = [encoder.prepare([item] if isinstance(items, list) else np.asarray([item])) for item in chosen]
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        mean = mean_row_flops(lambda batch: count_flops(lambda: encoder(**batch)), batches)
    encoder.train(was_training)
    return mean


def device_name(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu} ×{torch.get_num_threads()} threads"


def price(seconds: float, price_per_device_hour: float) -> float | None:
    """Cost of `seconds` of device time at a params-set price (None when no price is set)."""
    if price_per_device_hour <= 0:
        return None
    return seconds / 3600.0 * price_per_device_hour
