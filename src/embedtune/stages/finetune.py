"""Stage `finetune`: every run of one tuned method on one task at the searched learning rate (`runs`
docstring, step 3): results, curves, test predictions (float64), shift scores and the stage's figures.
Notebook 02 calls `run` and shows what it wrote."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pandas as pd

from .. import reports
from ..flops import add_run_flops
from ..io import seed_everything, write_csv
from ..outputs import write_method_outputs
from ..params import Params
from ..paths import TaskPaths, run_key
from ..plan import chosen_lr, tuned_runs
from ..registry import metric_names
from ..runs import run_one, stage_context
from ..store import RunStore


def run(params: Params, task: str, method: str, *, root: Path = Path("."), progress: bool = True) -> dict[str, Any]:
    """Write ``results/<task>/{<method>.csv, preds/, curves/, shift/}``, ``metrics/<task>/<method>.json`` and
    the method's learning-curve and training-curve PNGs. Needs the search stage's pick."""
    seed_everything(0)
    paths = TaskPaths(root, task)
    with contextlib.redirect_stdout(io.StringIO()):  # the image backbone's loader prints a line the page would show
        ctx = stage_context(params, task, method, root=root, progress=progress)
    RunStore(root, task, method).stage_folder("final").mkdir(parents=True, exist_ok=True)  # a declared output
    rows, curves, shift_rows, preds = [], [], [], {}
    for seed, budget in tuned_runs(ctx.subsets):
        lr = chosen_lr(paths.hparams(method), method, budget=budget)
        out = run_one(ctx, seed=seed, budget=budget, lr=lr, progress=progress)
        key = run_key(seed, budget)
        rows.append(add_run_flops(ctx, out["row"], key=key))
        curves.extend(out["curve"])
        shift_rows.extend(out["shift"])
        preds[key] = out["arrays"]["probs"]
        preds[f"val_{key}"] = out["arrays"]["val_probs"]
        if "thresholds" in out["arrays"]:
            preds[f"thr_{key}"] = out["arrays"]["thresholds"]
    frame = write_method_outputs(paths, method, rows, preds, y_test=ctx.test.y, y_val=ctx.val.y,
                                 summary_columns=metric_names(ctx.multi))
    curve_frame = pd.DataFrame(curves)
    write_csv(paths.results / "curves" / f"{method}.csv", curve_frame)
    write_csv(paths.results / "shift" / f"{method}.csv", pd.DataFrame(shift_rows))
    metric = params.task(task).main_metric
    # this method alone: the compare page sets every method side by side (reading the probe here would make
    # every tuned stage re-run when a probe setting changes)
    curve = reports.save_figure(reports.learning_curve_figure(frame, metric, title=f"{task}: {method}"),
                                paths.figure(f"{method}-learning-curve"))
    training = reports.save_figure(reports.training_curves_figure(curve_frame, title=f"{task}: {method} training",
                                                                  metric=metric), paths.figure(f"{method}-training-curves"))
    return {"results": frame, "curves": curve_frame, "learning_curve": curve, "training_curves": training}


def view(params: Params, task: str, method: str, *, root: Path = Path(".")) -> dict[str, Any]:
    """What `run` returns, read from the files it wrote (the notebook's read mode): trains, computes and
    writes nothing; a missing file stops with the stage that writes it."""
    paths = TaskPaths(root, task)
    files = {"results": paths.results / f"{method}.csv", "curves": paths.results / "curves" / f"{method}.csv",
             "learning_curve": paths.figure(f"{method}-learning-curve"),
             "training_curves": paths.figure(f"{method}-training-curves")}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; the finetune stage writes it: "
                                    f"dvc repro finetune@{task}-{method}")
    return {"results": pd.read_csv(files["results"]), "curves": pd.read_csv(files["curves"]),
            "learning_curve": files["learning_curve"], "training_curves": files["training_curves"]}
