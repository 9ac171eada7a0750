"""Which arithmetic a tuned run trains in: ``bf16`` autocast or ``fp32``.

``finetune.precision``: ``fp32`` or ``bf16`` force it; ``auto`` picks bf16 where the device runs it natively
and it has been measured faster at equal accuracy, fp32 otherwise. On a CUDA device with native bf16 that is
bf16 (mixed precision is the standard there). On a CPU, auto stays fp32 until `benchmarks/` measures our loop
under bf16 autocast beside fp32 on this host (``reports/benchmarks.md``); a CPU's native support
(AVX512-BF16 / AMX) is detected and recorded but is not by itself evidence of a speed-up. Each run records
its precision, and the precision is part of the run-cache key.
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
    return "bf16" if torch.device(device).type == "cuda" and native_bf16(device) else "fp32"
