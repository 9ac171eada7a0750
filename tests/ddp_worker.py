"""One fine-tuning run of the engine on a tiny model, for test_ddp.py; run as ``python tests/ddp_worker.py``
(one process) or under ``accelerate launch`` (several). Writes the result through `embedtune.io`, so under
several processes only rank 0 writes.

    python tests/ddp_worker.py MODEL_DIR OUT_DIR METHOD N_TRAIN [--fail-rank R] [--interrupt-round R]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # conftest's data helpers

from conftest import make_text_rows  # noqa: E402

from embedtune.backbones import load_backbone  # noqa: E402
from embedtune.engine import TrainConfig, build_model, predict, train  # noqa: E402
from embedtune.io import seed_everything, write_json  # noqa: E402


class Interrupted(Exception):
    """Stands for a killed job: raised on every rank after a round's checkpoint."""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("method")
    parser.add_argument("n_train", type=int)
    parser.add_argument("--fail-rank", type=int, default=None)
    parser.add_argument("--interrupt-round", type=int, default=None)
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    seed_everything(0)
    encoder = load_backbone(args.model_dir, kind="text", max_length=16)
    for module in encoder.modules():  # no dropout: one process and two must compute the same function
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    frame = make_text_rows(args.n_train + 40)
    x, y = frame["text"].tolist(), (frame["label"] == "pos").to_numpy(np.int64)
    model = build_model(copy.deepcopy(encoder), 2, method=args.method, lora_rank=2, dropout=0.0)
    config = TrainConfig(method=args.method, max_epochs=3, batch_size=8, lr=1e-3 if args.method == "full" else 5e-3,
                         head_lr=1e-2, min_steps=6, evals_per_run=3, max_rounds=3, patience=5, class_weights=False,
                         main_metric="accuracy", seed=0, lora_rank=2)

    def on_step(round_index: int, step: int) -> None:
        if args.fail_rank == rank and round_index == 1:
            raise RuntimeError(f"rank {rank} failed on purpose")
        if args.interrupt_round is not None and round_index == args.interrupt_round and step == 1:
            raise Interrupted(f"interrupted at round {round_index}")

    result = train(model, train_items=x[:args.n_train], train_y=y[:args.n_train], val_items=x[-40:], val_y=y[-40:],
                   config=config, checkpoint_dir=args.out_dir / "checkpoint", progress=False, on_step=on_step)
    probs = predict(model, model.encoder, x[-40:], batch_size=16, device=torch.device("cpu"), multi_label=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    write_json(args.out_dir / "result.json", {
        "world_size": world, "steps": result.steps, "resumed_from": result.resumed_from_epoch,
        "val_loss": [h["val_loss"] for h in result.history], "val_metric": [h["val_metric"] for h in result.history],
        "train_loss": [h["train_loss"] for h in result.history], "probs": probs.tolist()})
    write_json(args.out_dir / f"written-by-rank-{rank}.json", {"rank": rank})  # only rank 0's may exist
    return 0


if __name__ == "__main__":
    sys.exit(main())
