"""What the compare and summary notebooks show: functions that only read results (they never train) and
return tables and PNG paths. The probe and fine-tuning notebooks call `train_views`, which trains.

Notebooks stay thin (parameters → one call here → display); everything they show is also a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from . import compare, reports
from .io import read_json, write_csv, write_json
from .params import METHODS, PROFILES, Params, ParamsError, load_params
from .stages import TaskPaths


def notebook_params(*, params_path: str, profile: str, task: str | None = None, method: str | None = None,
                    root: str = ".") -> tuple[Params, Path]:
    """Validate papermill parameters (types and names) and load params.yaml for `profile`."""
    for name, value in (("params_path", params_path), ("profile", profile), ("root", root)):
        if not isinstance(value, str):
            raise ParamsError(f"notebook parameter {name}: bad value {value!r} ({type(value).__name__}); expected a string")
    if profile not in PROFILES:
        raise ParamsError(f"notebook parameter profile: bad value {profile!r}; allowed values: {list(PROFILES)}")
    params = load_params(params_path, profile=profile)
    if task is not None:
        if not isinstance(task, str):
            raise ParamsError(f"notebook parameter task: bad value {task!r}; expected a task name string")
        params.task(task)
    if method is not None and method not in METHODS:
        raise ParamsError(f"notebook parameter method: bad value {method!r}; allowed values: {list(METHODS)}")
    return params, Path(root)


def figure_path(root: Path, task: str, name: str) -> Path:
    return root / "reports" / "figures" / f"{task}-{name}.png"


def readable_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Standard-deviation columns as text for display: a single-seed cell reads "— (1 seed)", not NaN."""
    out = table.copy()
    for col in [c for c in out.columns if str(c).split(" ")[-1] == "std"]:
        out[col] = [f"{v:.4f}" if pd.notna(v) else "— (1 seed)" for v in out[col]]
    return out


def _summary(frame: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    cols = [m for m in metrics if m in frame]
    agg = frame.groupby(["method", "budget"])[cols + ["train_seconds"]].agg(["mean", "std"])
    agg.columns = [f"{a} {b}" for a, b in agg.columns]
    return readable_spread(agg.reset_index())


def compare_metrics(frame: pd.DataFrame) -> tuple[str, ...]:
    return tuple(c for c in ("accuracy", "macro_f1", "balanced_accuracy", "auroc", "ece", "micro_f1") if c in frame)


def compare_view(params: Params, task: str, root: Path, *, n_boot: int = 1000) -> dict[str, Any]:
    """Everything the per-task comparison shows; also writes results/<task>/comparisons.csv,
    metrics/<task>/headline.json and the PNGs under reports/figures/."""
    paths = TaskPaths(root, task)
    metric = params.task(task).main_metric
    results = compare.load_results(paths.results)
    methods = [m for m in compare.METHOD_ORDER if m in set(results["method"])]
    preds = {m: compare.load_predictions(paths.results, m) for m in methods}
    pairs = compare.all_comparisons(preds, metric=metric, n_boot=n_boot)
    comp_frame = pd.concat([compare.comparisons_frame(v) for v in pairs.values()], ignore_index=True)
    write_csv(paths.results / "comparisons.csv", comp_frame)
    crossing = {m: compare.crossing_budget(pairs.get((m, "probe"), [])) for m in compare.TUNED if m in methods}
    curves = pd.concat([pd.read_csv(p) for p in sorted((paths.results / "curves").glob("*.csv"))],
                       ignore_index=True) if (paths.results / "curves").is_dir() else pd.DataFrame()
    gap = compare.overfitting_gap(curves)
    costs = compare.cost_ratios(results)
    largest = int(results["budget"].max())
    calibration = (results[results["budget"] == largest].groupby("method")["ece"].agg(["mean", "std"]).reset_index()
                   if "ece" in results else pd.DataFrame())
    from .findings import decision_guide

    embed_meta = root / "data" / "embeddings" / task / "meta.json"
    seconds_per_row = (read_json(embed_meta).get("cost", {}) or {}).get("seconds_per_row") \
        if embed_meta.is_file() else None
    guide = decision_guide(results, comp_frame, metric=metric, embed_seconds_per_row=seconds_per_row)
    headline = compare.headline(results, metric)
    drops = compare.shift_drops(results, compare.load_shift(paths.results), metric)
    drop_diffs = compare.drop_differences(drops)
    write_csv(paths.results / "shift_drops.csv", drops)
    write_csv(paths.results / "shift_compare.csv", drop_diffs)
    robustness = {}
    if not drops.empty:
        at = drops[drops["budget"] == headline["budget"]]
        robustness = {str(m): float(v) for m, v in at.groupby("method")["drop_points"].mean().items()}
    headline.update({"crossing_budget": crossing, "task": task, "shift_drop_points": robustness})
    write_json(paths.metrics / "headline.json", headline)
    write_csv(paths.results / "decision.csv", guide)
    wide = compare.summary_table(results, metric).astype({"method": str}).pivot(index="budget", columns="method",
                                                                                values="mean")
    write_csv(paths.results / "learning_curve.csv", wide[[m for m in compare.METHOD_ORDER if m in wide]].reset_index())
    figs = {
        "learning_curve": reports.save_figure(reports.learning_curve_figure(results, metric, title=f"{task}: all methods"),
                                              figure_path(root, task, "learning-curves")),
        "cost_quality": reports.save_figure(reports.cost_quality_figure(results, metric, title=f"{task}: quality vs cost"),
                                            figure_path(root, task, "cost-quality")),
        "shift": reports.save_figure(reports.shift_figure(drops, metric, budget=headline["budget"],
                                                          title=f"{task}: {metric} under shift, "
                                                                f"{headline['budget']} labels"),
                                     figure_path(root, task, "shift")),
    }
    hparams = pd.concat([pd.read_csv(p) for p in sorted((paths.results / "hparams").glob("*.csv"))
                         if p.stat().st_size > 1], ignore_index=True) if (paths.results / "hparams").is_dir() \
        else pd.DataFrame()
    write_csv(paths.results / "hparams.csv", hparams)
    return {"metric": metric, "summary": readable_spread(compare.summary_table(results, metric)),
            "comparisons": comp_frame, "crossing": crossing, "gap": gap, "costs": costs,
            "calibration": readable_spread(calibration), "guide": guide,
            "headline": headline, "figures": figs, "hparams": hparams, "shift_compare": drop_diffs,
            "shift_summary": _shift_summary(drops)}


def _shift_summary(drops: pd.DataFrame) -> pd.DataFrame:
    """Mean drop (points) per method × budget × shift family."""
    if drops.empty:
        return drops
    return drops.groupby(["budget", "shift", "method"])["drop_points"].mean().unstack("method").reset_index()


def published_reference() -> pd.DataFrame:
    """Published test numbers on the same data (source: the data mirror's README and the cited papers)."""
    return pd.DataFrame([
        {"task": "medical (PneumoniaMNIST)", "model": "ResNet-18 (28 px), from scratch, all 4708 labels",
         "metric": "AUROC / accuracy", "value": "0.944 / 0.854", "source": "MedMNIST v2, Yang et al., Sci. Data 2023"},
        {"task": "medical (PneumoniaMNIST)", "model": "ResNet-50 (224 px), from scratch, all labels",
         "metric": "AUROC / accuracy", "value": "0.962 / 0.884", "source": "MedMNIST v2"},
        {"task": "legal (UNFAIR-ToS)", "model": "TF-IDF + SVM, all 5532 labels", "metric": "micro-F1 / macro-F1",
         "value": "95.4 / 78.8", "source": "LexGLUE, Chalkidis et al., ACL 2022"},
        {"task": "legal (UNFAIR-ToS)", "model": "BERT-base fine-tuned, all labels", "metric": "micro-F1 / macro-F1",
         "value": "95.6 / 81.3", "source": "LexGLUE"},
        {"task": "legal (UNFAIR-ToS)", "model": "Legal-BERT fine-tuned, all labels", "metric": "micro-F1 / macro-F1",
         "value": "96.0 / 83.0", "source": "LexGLUE"},
    ])


def summary_figure(view: dict[str, Any], root: Path) -> Path:
    """One learning-curve panel per task (all methods): the README's key figure."""
    import matplotlib.pyplot as plt

    tasks = list(view["headlines"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        results = compare.load_results(TaskPaths(root, task).results)
        metric = view["headlines"][task]["metric"]
        reports.plot_learning_curves(ax, results, metric)
        ax.set(title=task, xlabel="labelled examples (log)", ylabel=metric)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("test metric vs label budget, mean ± sd over seeds")
    fig.tight_layout()
    return reports.save_figure(fig, root / "reports" / "figures" / "summary-learning-curves.png")
