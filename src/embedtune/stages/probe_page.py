"""Stage `probe_page`: the probe page's figures (learning curves of the probe, layer probe and classic; the
probe's confusion at the largest budget; where the layer probe reads) drawn from the files the `probe` stage
and `prepare` wrote. Notebook 01 calls `run` (the DVC stage) or `view` (read mode) and shows the result; no
probe is fitted here, so editing the page never refits one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd

from .. import reports
from ..compare import load_predictions
from ..io import read_json
from ..params import Params
from ..paths import TaskPaths, run_key

PROBE_METHODS = ("probe", "layer_probe", "classic")
FIGURES = {"learning_curve": "probe-learning-curve", "confusion": "probe-confusion", "layer_mass": "layer-mass"}


def _inputs(paths: TaskPaths) -> dict[str, Path]:
    """The files the page reads; a missing one stops with the stage that writes it."""
    task = paths.task
    needed = {"card": (paths.results / "card.json", f"prepare@{task}"),
              "layer_mass": (paths.results / "layer_mass.csv", f"probe@{task}"),
              **{m: (paths.results / f"{m}.csv", f"probe@{task}") for m in PROBE_METHODS}}
    for path, stage in needed.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; the {stage.split('@')[0]} stage writes it: dvc repro {stage}")
    return {k: v[0] for k, v in needed.items()}


def run(params: Params, task: str, *, root: Path = Path(".")) -> dict[str, Any]:
    """Write ``reports/figures/<task>-{probe-learning-curve,probe-confusion,layer-mass}.png``; return the
    result rows, the data card and the figure paths for the notebook."""
    paths = TaskPaths(root, task)
    files = _inputs(paths)
    results = pd.concat([pd.read_csv(files[m]) for m in PROBE_METHODS], ignore_index=True)
    card = read_json(files["card"])
    metric = params.task(task).main_metric
    figures = {
        "learning_curve": reports.save_figure(
            reports.learning_curve_figure(results, metric, title=f"{task}: probe, layer probe and classic"),
            paths.figure(FIGURES["learning_curve"])),
        "layer_mass": reports.save_figure(
            reports.layer_mass_figure(pd.read_csv(files["layer_mass"]), title=f"{task}: where the layer probe reads"),
            paths.figure(FIGURES["layer_mass"])),
    }
    preds = load_predictions(paths.results, "probe")
    probe_rows = results[results["method"] == "probe"]
    budget, seed = int(probe_rows["budget"].max()), int(probe_rows["seed"].min())
    key = run_key(seed, budget)
    figures["confusion"] = reports.save_figure(
        reports.confusion_figure(preds["y_test"], preds[key], list(card["label_names"]),
                                 thresholds=preds.get(f"thr_{key}"),
                                 title=f"{task}: probe, {budget:,} labels, seed {seed}"),
        paths.figure(FIGURES["confusion"]))
    return {"results": results, "data_card": card, **figures}


def view(params: Params, task: str, *, root: Path = Path(".")) -> dict[str, Any]:
    """What `run` returns, read from the committed files (the notebook's read mode): writes nothing."""
    paths = TaskPaths(root, task)
    files = _inputs(paths)
    figures = {k: paths.figure(name) for k, name in FIGURES.items()}
    for path in figures.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; the probe_page stage writes it: dvc repro probe_page@{task}")
    results = pd.concat([pd.read_csv(files[m]) for m in PROBE_METHODS], ignore_index=True)
    return {"results": results, "data_card": read_json(files["card"]), **figures}


if __name__ == "__main__":
    from ..entry import stage_main

    sys.exit(stage_main(run, doc=__doc__))
