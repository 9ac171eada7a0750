"""Which arithmetic a tuned run trains in: ``bf16`` autocast or ``fp32``.

``finetune.precision``: ``fp32`` or ``bf16`` force it; ``auto`` picks bf16 where the device runs bf16 matmuls
natively (a CUDA device with bf16 support; a CPU with AVX512-BF16 or AMX, as oneDNN reports it) and fp32
otherwise. Autocast keeps the weights, the optimizer state and the loss in fp32; only matmuls and
convolutions run in bf16. The evidence that this is faster at equal accuracy on such a CPU is measured
side by side by `benchmarks/run_all.py` (our loop in both precisions: throughput, loss after N steps, final
metric; ``reports/benchmarks.md``); without native units bf16 autocast emulates and runs many times slower,
hence fp32 there. Each run records its precision, and the precision is part of the run-cache key.
"""

from __future__ import annotations

import torch


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` runs bf16 matmuls natively (CUDA: compute capability; CPU: oneDNN's bf16 check)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        try:
            return bool(check()) if check is not None else False
        except RuntimeError:
            return False
    return False


def choose(setting: str, device: torch.device | str) -> str:
    """The precision a run uses for `setting` (``auto`` | ``fp32`` | ``bf16``) on `device` (module docstring)."""
    if setting in ("fp32", "bf16"):
        return setting
    if setting != "auto":
        raise ValueError(f"finetune.precision: bad value {setting!r}; allowed values: ['auto', 'bf16', 'fp32']")
    return "bf16" if native_bf16(device) else "fp32"
