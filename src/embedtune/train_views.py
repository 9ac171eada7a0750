"""What the probe and fine-tuning notebooks show. These functions train: each runs its stage (the probe
stage in `stages`, the search and fine-tuning stages in `tuning`) and returns tables and PNG paths.

Notebooks stay thin (parameters → one call here → display); everything they show is also a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from . import compare, reports
from .data import load_prepared
from .io import read_json
from .params import Params
from .stages import TaskPaths, embed_stage, prepare_stage, probe_stage, run_key, shift_stage
from .tuning import finetune_stage, search_stage
from .views import _summary, compare_metrics, figure_path


def ensure_upstream(params: Params, task: str, root: Path, *, probe: bool = False) -> None:
    """Run prepare / embed (/ probe) when their outputs are missing, so 'Run All' works in JupyterLab.
    Under DVC they already exist and nothing runs here."""
    paths = TaskPaths(root, task)
    if not paths.subsets.is_file():
        prepare_stage(params, task, root=root)
    if not (paths.shift / "sets.json").is_file():
        shift_stage(params, task, root=root)
    if not (paths.embeddings / "meta.json").is_file():
        embed_stage(params, task, root=root)
    if probe and not paths.probe_heads.is_file():
        probe_stage(params, task, root=root)


def probe_view(params: Params, task: str, root: Path) -> dict[str, Any]:
    """Run the probe stage; learning curve (probe vs classic) and the probe's confusion matrix at the
    largest budget (seed of the first run)."""
    ensure_upstream(params, task, root)
    frames = probe_stage(params, task, root=root)
    both = pd.concat(frames.values(), ignore_index=True)
    metric = params.task(task).main_metric
    paths = TaskPaths(root, task)
    curve = reports.save_figure(reports.learning_curve_figure(both, metric, title=f"{task}: probe vs classic"),
                                figure_path(root, task, "probe-learning-curve"))
    data = load_prepared(paths.prepared)
    preds = compare.load_predictions(paths.results, "probe")
    budget = int(both["budget"].max())
    seed = int(both["seed"].min())
    key = run_key(seed, budget)
    confusion = reports.save_figure(
        reports.confusion_figure(preds["y_test"], preds[key], data.label_names, thresholds=preds.get(f"thr_{key}"),
                                 title=f"{task}: probe, {budget} labels, seed {seed}"),
        figure_path(root, task, "probe-confusion"))
    return {"summary": _summary(both, tuple(c for c in both.columns if c in compare_metrics(both))),
            "learning_curve": curve, "confusion": confusion, "data_card": read_json(paths.prepared / "card.json")}


def finetune_view(params: Params, task: str, method: str, root: Path, *, progress: bool = True) -> dict[str, Any]:
    """Run one fine-tuning method; its learning curve beside the probe's, and its train/val curves."""
    ensure_upstream(params, task, root, probe=method == "lp_ft")
    if not (TaskPaths(root, task).results / "hparams" / f"{method}.csv").is_file():
        search_stage(params, task, method, root=root, progress=progress)
    out = finetune_stage(params, task, method, root=root, progress=progress)
    metric = params.task(task).main_metric
    paths = TaskPaths(root, task)
    frames = [out[method]]
    if (paths.results / "probe.csv").is_file():
        frames.append(pd.read_csv(paths.results / "probe.csv"))
    both = pd.concat(frames, ignore_index=True)
    curve = reports.save_figure(reports.learning_curve_figure(both, metric, title=f"{task}: {method} vs probe"),
                                figure_path(root, task, f"{method}-learning-curve"))
    training = reports.save_figure(reports.training_curves_figure(out["curves"], title=f"{task}: {method} training"),
                                   figure_path(root, task, f"{method}-training-curves"))
    return {"summary": _summary(out[method], compare_metrics(out[method])), "learning_curve": curve,
            "training_curves": training}
