"""GPU check: fine-tune the default text and image backbones for a bounded number of steps with bf16 autocast
and print samples/s, peak allocated memory and the achieved fraction of the card's bf16 peak.

Usage (on a machine with CUDA): ``python scripts/gpu_check.py [--steps 50] [--batch 64] [--peak-tflops 989]
[--kinds text image]``. One JSON line per backbone on stdout.
Exits with a clear message (status 2) where no CUDA device is present.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import numpy as np
import torch


def run(kind: str, *, steps: int, batch: int, peak_tflops: float) -> dict[str, float | str]:
    from embedtune.backbones import load_backbone
    from embedtune.costs import count_flops
    from embedtune.engine import build_model

    device = torch.device("cuda")
    if kind == "text":
        encoder = load_backbone("pkg:all-minilm-l6-v2", kind="text", max_length=128)
        rng = np.random.default_rng(0)
        words = ["good", "bad", "plot", "film", "actor", "boring", "great", "scene"]
        items = [" ".join(rng.choice(words, size=40)) for _ in range(batch)]  # ~42 tokens each
    else:
        encoder = load_backbone("pkg:efficientnet-lite0", kind="image", image_size=224)
        items = np.random.default_rng(0).integers(0, 255, (batch, 28, 28)).astype(np.uint8)
    model = build_model(copy.deepcopy(encoder), 2, method="full").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batch_tensors = {k: v.to(device) for k, v in model.encoder.prepare(items).items()}
    target = torch.zeros(batch, dtype=torch.long, device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(**batch_tensors)
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    flops = count_flops(step)
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    achieved = flops * steps / seconds / 1e12
    return {"backbone": encoder.model_id, "device": torch.cuda.get_device_name(), "batch": batch, "steps": steps,
            "samples_per_s": batch * steps / seconds, "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20,
            "achieved_tflops": achieved, "fraction_of_bf16_peak": achieved / peak_tflops}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of the card (H100 SXM and H200: 989)")
    parser.add_argument("--kinds", nargs="+", choices=["text", "image"], default=["text", "image"],
                        help="backbones to check (a machine may lack one's packaged weights)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("error: no CUDA device; run this script on a GPU machine", file=sys.stderr)
        return 2
    for kind in args.kinds:
        print(json.dumps(run(kind, steps=args.steps, batch=args.batch, peak_tflops=args.peak_tflops)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
