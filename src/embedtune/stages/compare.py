"""Stage `compare`: every method of one task side by side — paired comparisons, the decision per budget,
shift drops, learning/cost/shift figures and the headline. Notebook 03 calls `run` and shows what it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .. import compare, reports, robustness
from ..decision import decision_guide, search_seconds
from ..io import read_json, write_csv, write_json
from ..params import Params
from ..paths import TaskPaths
from ..registry import METHOD_ORDER, TUNED_METHODS


def stored_embed_seconds_per_row(results: pd.DataFrame, task: str) -> float:
    """The embedding pass's seconds per row as the stored probe fits measured it (their ``embed_seconds`` over
    the rows they embedded, median over fits): the probe's build cost comes from the run store, like every tuned
    run's, so a re-render on another host leaves costs and picks unchanged (the embed stage's own timing,
    data/embeddings/<task>/meta.json, is this render's host)."""
    probe = results[results["method"].astype(str) == "probe"]
    if probe.empty or "embed_seconds" not in probe or probe["embed_seconds"].isna().all():
        raise ValueError(f"{task}: no probe result row records embed_seconds, which the probe's build cost needs; "
                         f"refit the probe into the run store: EMBEDTUNE_STORE=cold dvc repro probe@{task}")
    return float((probe["embed_seconds"] / (probe["budget"] + probe["n_val"])).median())


def run(params: Params, task: str, *, root: Path = Path("."), n_boot: int = 1000) -> dict[str, Any]:
    """Write ``results/<task>/{comparisons,decision,learning_curve,shift,shift_drops,shift_compare,hparams}.csv``,
    ``metrics/<task>/headline.json`` and the task's three PNGs; return them for the notebook."""
    paths = TaskPaths(root, task)
    metric = params.task(task).main_metric
    results = compare.load_results(paths.results)
    methods = [m for m in METHOD_ORDER if m in set(results["method"].astype(str))]
    preds = {m: compare.load_predictions(paths.results, m) for m in methods}
    pairs = compare.all_comparisons(preds, metric=metric, n_boot=n_boot)
    comparisons = pd.concat([compare.comparisons_frame(v) for v in pairs.values()], ignore_index=True)
    write_csv(paths.results / "comparisons.csv", comparisons)
    crossing = {m: compare.crossing_budget(pairs.get((m, "probe"), [])) for m in TUNED_METHODS if m in methods}
    seconds_per_row = stored_embed_seconds_per_row(results, task)

    headline = compare.headline(results, metric)
    shift_table = robustness.load_shift(paths.results)
    write_csv(paths.results / "shift.csv", shift_table)
    drops = robustness.shift_drops(results, shift_table, metric)
    write_csv(paths.results / "shift_drops.csv", drops)
    write_csv(paths.results / "shift_compare.csv", robustness.drop_differences(drops))
    drop_by_method = {}
    if not drops.empty:
        at = drops[drops["budget"] == headline["budget"]]
        drop_by_method = {str(m): float(v) for m, v in at.groupby("method")["drop_points"].mean().items()}
    headline.update({"crossing_budget": crossing, "task": task, "shift_drop_points": drop_by_method,
                     "embed_seconds_per_row": seconds_per_row})
    write_json(paths.metrics / "headline.json", headline)
    wide = compare.summary_table(results, metric).astype({"method": str}).pivot(index="budget", columns="method",
                                                                                values="mean")
    write_csv(paths.results / "learning_curve.csv", wide[[m for m in METHOD_ORDER if m in wide]].reset_index())
    hparams_dir = paths.results / "hparams"
    frames = [pd.read_csv(p) for p in sorted(hparams_dir.glob("*.csv")) if p.stat().st_size > 1] \
        if hparams_dir.is_dir() else []
    hparams = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_csv(paths.results / "hparams.csv", hparams)
    guide = decision_guide(results, preds, metric=metric, embed_seconds_per_row=seconds_per_row,
                           margin=params.scale.decision.margin_points, search=search_seconds(hparams),
                           comparisons=comparisons)
    write_csv(paths.results / "decision.csv", guide)
    figures = {
        "learning_curve": reports.save_figure(
            reports.learning_curve_figure(results, metric, title=f"{task}: all methods"),
            paths.figure("learning-curves")),
        "cost_quality": reports.save_figure(
            reports.cost_quality_figure(results, metric, title=f"{task}: quality vs cost"),
            paths.figure("cost-quality")),
        "shift": reports.save_figure(
            reports.shift_figure(drops, metric, budget=headline["budget"],
                                 title=f"{task}: {metric} under shift, {headline['budget']} labels"),
            paths.figure("shift")),
    }
    return {"metric": metric, "figures": figures, "crossing": crossing, "headline": headline}


def view(params: Params, task: str, *, root: Path = Path(".")) -> dict[str, Any]:
    """What `run` returns, read from the files it wrote (the notebook's read mode): computes and writes
    nothing; a missing file stops with the stage that writes it."""
    paths = TaskPaths(root, task)
    headline_path = paths.metrics / "headline.json"
    figures = {"learning_curve": paths.figure("learning-curves"), "cost_quality": paths.figure("cost-quality"),
               "shift": paths.figure("shift")}
    for path in (headline_path, *figures.values()):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; the compare stage writes it: dvc repro compare@{task}")
    headline = read_json(headline_path)
    return {"metric": params.task(task).main_metric, "figures": figures,
            "crossing": headline.get("crossing_budget", {}), "headline": headline}
