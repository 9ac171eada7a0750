"""Time the shift arm adds per trained model: scoring every shift set vs scoring the clean test split.

Scoring is inference only, so it is timed on each task's backbone (full model, as `full`, `lp_ft` and
`lora` score it; unmerged LoRA adapters are slower, `partial` scores cached lower blocks and is cheaper) with the cpu profile's
prepared data and shift sets. Run after `dvc repro` (needs data/prepared and data/shift):

    python benchmarks/shift_cost.py            # writes reports/shift-cost.md

Prints, per task, seconds per run for the clean test split and for all shift sets, their ratio, and the
total over the tuned runs the profile makes.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from embedtune.backbones import load_backbone
    from embedtune.data import load_prepared
    from embedtune.engine import build_model, predict
    from embedtune.io import write_text
    from embedtune.params import load_params, task_kind
    from embedtune.paths import TaskPaths, load_subsets
    from embedtune.plan import tuned_runs
    from embedtune.shift import read_shift_sets

    params = load_params(REPO / "params.yaml")
    embed = params.scale.embed
    lines = ["# Shift arm: added scoring time per trained model", "",
             f"Profile `{params.profile}`, this machine ({torch.get_num_threads()} threads); "
             "`python benchmarks/shift_cost.py`. One timing per task after a warm-up.", "",
             "| task | test rows | shift rows | test s/run | shift s/run | shift ÷ test | tuned runs (incl. search) | shift s, all tuned runs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    total = 0.0
    for task in params.tasks:
        paths = TaskPaths(REPO, task)
        data = load_prepared(paths.prepared)
        sets = read_shift_sets(paths.shift)
        encoder = load_backbone(params.backbone_for(task), kind=task_kind(params.task(task)), pooling=embed.pooling,
                                max_length=embed.max_length, image_size=embed.image_size)
        model = build_model(copy.deepcopy(encoder), data.splits["train"].y.shape[1] if data.multi_label
                            else len(data.label_names), method="full")
        multi, device = data.multi_label, torch.device("cpu")
        test = data.splits["test"]
        predict(model, model.encoder, test.x[:64] if not isinstance(test.x, list) else test.x[:64], batch_size=64,
                device=device, multi_label=multi)  # warm-up
        start = time.perf_counter()
        predict(model, model.encoder, test.x, batch_size=64, device=device, multi_label=multi)
        test_s = time.perf_counter() - start
        start = time.perf_counter()
        for s in sets:
            predict(model, model.encoder, s.x, batch_size=64, device=device, multi_label=multi)
        shift_s = time.perf_counter() - start
        import pandas as pd

        # the final runs, plus search candidates that were not reused (each scored the shift sets too)
        extra = sum(max(len(pd.read_csv(f)) - 1, 0) for m in params.scale.finetune.methods
                    if (f := paths.results / "hparams" / f"{m}.csv").is_file())
        n_runs = len(tuned_runs(load_subsets(paths))) * len(params.scale.finetune.methods) + extra
        rows = sum(len(s.y) for s in sets)
        lines.append(f"| {task} | {len(test.y)} | {rows} | {test_s:.1f} | {shift_s:.1f} | {shift_s / test_s:.2f} | "
                     f"{n_runs} | {shift_s * n_runs:.0f} |")
        print(lines[-1], flush=True)
        total += shift_s * n_runs
    lines += ["", f"All shift scoring of the tuned runs in this profile: **{total / 60:.1f} min** on this machine "
              "(the probe and classic score the shift sets on cached embeddings and features, which is cheaper). "
              "Measured with nothing else running; `partial` scores cached lower blocks and is cheaper, "
              "unmerged LoRA adapters a little dearer, than the full model timed here."]
    write_text(REPO / "reports" / "shift-cost.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
