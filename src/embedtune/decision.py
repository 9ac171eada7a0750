"""What to pick at each label budget: the decision rule, with the burden of proof on the cheaper method.

Rule (per task and budget): the **best** method is the one with the highest mean main metric over its
seeds. Every method cheaper to build than the best (measured cost to build, median over seeds: embedding the
rows it needs + fitting or training) is a candidate, tried cheapest first. A candidate is **shown
non-inferior** when the lower end of its one-sided paired interval for (candidate − best), on the seeds both
ran and the shared test set (`compare.paired_spread`), lies above −``margin`` (``decision.margin_points``,
points of the main metric). The pick is the cheapest candidate shown non-inferior; when none is, the best.
A noisy cheap method therefore gets a wide interval and is *not* picked; a cheap method truly equal to the
best is picked once its interval is narrow enough. The pick's mean is never more than the margin below the
best's.

Multiplicity: the family is the decisions the task makes (one per budget). Each decision holds its error
(picking a method more than the margin below the best) at ``alpha / n_decisions`` by testing its k
candidates at ``alpha / (n_decisions · k)`` each (Bonferroni). Each row also gives the smallest difference
the run could detect at that level with 80% power (median over the candidates): a budget where it is large
says more seeds would change the answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .compare import paired_spread, run_keys
from .registry import METHOD_ORDER

ALPHA = 0.05


def cost_to_build(results: pd.DataFrame, *, embed_seconds_per_row: float | None, n_val: int) -> pd.Series:
    """Seconds to build each run's model, labelling aside: embedding the rows it needs (probe: budget +
    selection rows) + fitting, or the whole training run (tuned methods; partial adds its lower blocks)."""
    cost = results["train_seconds"].astype(float).copy()
    probe = results["method"].astype(str) == "probe"
    if embed_seconds_per_row is not None:
        cost[probe] += embed_seconds_per_row * (results.loc[probe, "budget"].astype(float) + n_val)
    if "lower_blocks_seconds_per_row" in results:
        part = results["method"].astype(str) == "partial"
        cost[part] += results.loc[part, "lower_blocks_seconds_per_row"].astype(float) * (
            results.loc[part, "budget"].astype(float) + n_val)
    return cost


def _spread(preds: dict[str, dict[str, np.ndarray]], a: str, b: str, *, budget: int, metric: str,
            n_boot: int) -> Any:
    """(the paired spread of a − b on the seeds both ran at `budget`, how many seeds), or None."""
    keys = [k for k in run_keys(preds[a], budget) if k in preds[b]]
    if not keys:
        return None
    pa, pb = preds[a], preds[b]
    return paired_spread(pa["y_test"], [pa[k] for k in keys], [pb[k] for k in keys], metric=metric,
                         thresholds_a=[pa.get(f"thr_{k}") for k in keys],
                         thresholds_b=[pb.get(f"thr_{k}") for k in keys], n_boot=n_boot), len(keys)


def decision_guide(results: pd.DataFrame, preds: dict[str, dict[str, np.ndarray]], *, metric: str,
                   embed_seconds_per_row: float | None, margin: float = 1.0, alpha: float = ALPHA,
                   n_boot: int = 1000) -> pd.DataFrame:
    """Per budget: best, pick, runner-up, the pick's expected loss against the best and its evidence, the
    detectable difference, and every method's costs (module docstring's rule). `margin` in points."""
    n_val = int(results["n_val"].dropna().iloc[0]) if "n_val" in results and results["n_val"].notna().any() else 0
    frame = results.assign(build_seconds=cost_to_build(results, embed_seconds_per_row=embed_seconds_per_row,
                                                       n_val=n_val), method=results["method"].astype(str))
    budgets = sorted(int(b) for b in frame["budget"].unique())
    rows = []
    for budget in budgets:
        group = frame[frame["budget"] == budget]
        flops = {c: (c, "median") for c in ("train_flops", "infer_flops_per_row") if c in group}
        stats = group.groupby("method").agg(mean=(metric, "mean"), build=("build_seconds", "median"),
                                            serve=("infer_ms_per_1000", "median"), seeds=("seed", "nunique"),
                                            **flops)
        stats = stats.loc[[m for m in METHOD_ORDER if m in stats.index and m in preds]]
        best = str(stats["mean"].idxmax())
        candidates = sorted((m for m in stats.index if m != best and stats.loc[m, "build"] < stats.loc[best, "build"]),
                            key=lambda m: stats.loc[m, "build"])
        level = alpha / (len(budgets) * max(len(candidates), 1))  # one-sided, per candidate
        tested = []
        for m in candidates:
            got = _spread(preds, m, best, budget=budget, metric=metric, n_boot=n_boot)
            if got is None:
                continue
            spread, n_pairs = got
            lower = spread.observed - spread.half_width(2 * level)
            tested.append({"method": m, "lower": 100 * lower, "diff": 100 * spread.observed, "n": n_pairs,
                           "detectable": 100 * spread.detectable(level), "ok": lower > -margin / 100})
        passed = [t for t in tested if t["ok"]]
        pick = passed[0]["method"] if passed else best
        if passed:
            runner_up = passed[1]["method"] if len(passed) > 1 else best
            why = (f"cheapest shown non-inferior (lower bound {passed[0]['lower']:+.2f} > −{margin:g} points, "
                   f"{passed[0]['n']} paired seeds)")
        else:
            closest = max(tested, key=lambda t: t["lower"]) if tested else None
            runner_up = closest["method"] if closest else ""
            why = ("best mean; no cheaper method shown non-inferior" + (
                f" (closest: {closest['method']}, lower bound {closest['lower']:+.2f} points)" if closest else ""))
        rows.append({
            "budget": budget, "pick": pick, "pick_mean": float(stats.loc[pick, "mean"]),
            "expected_loss_points": 100 * float(stats.loc[best, "mean"] - stats.loc[pick, "mean"]),
            "best": best, "best_mean": float(stats.loc[best, "mean"]), "runner_up": runner_up,
            "runner_up_mean": float(stats.loc[runner_up, "mean"]) if runner_up else np.nan,
            "reason": why, "margin_points": margin, "alpha_per_test": level,
            "detectable_points": float(np.median([t["detectable"] for t in tested])) if tested else np.nan,
            "non_inferior": ", ".join(t["method"] for t in passed),
            "pick_build_seconds": float(stats.loc[pick, "build"]),
            "pick_serve_seconds_per_1000": float(stats.loc[pick, "serve"]) / 1000,
            # FLOPs travel between machines where seconds do not (classic's TF-IDF fit is not counted: NaN)
            "pick_train_flops": float(stats.loc[pick, "train_flops"]) if "train_flops" in stats else np.nan,
            "pick_infer_flops_per_row": float(stats.loc[pick, "infer_flops_per_row"])
            if "infer_flops_per_row" in stats else np.nan,
            **{f"build_s {m}": float(stats.loc[m, "build"]) for m in stats.index},
            **{f"serve_s_per_1000 {m}": float(stats.loc[m, "serve"]) / 1000 for m in stats.index}})
    return pd.DataFrame(rows)


def seconds_text(value: float) -> str:
    """Seconds at two significant digits, in the unit that reads best."""
    if value >= 10:
        return f"{float(f'{value:.2g}'):.0f} s"
    if value >= 1:
        return f"{value:.2g} s"
    return f"{float(f'{1000 * value:.2g}'):g} ms" if value >= 0.001 else f"{float(f'{1e6 * value:.2g}'):g} µs"


def guide_sentence(task: str, guide: pd.DataFrame, metric: str) -> str:
    """One sentence per domain from its decision guide: the rule, the margin, each pick, its expected loss
    against the best and the runner-up."""
    if guide.empty:
        return f"**{task}**: no decision guide (no results)."
    margin = float(guide["margin_points"].iloc[0]) if "margin_points" in guide else 1.0
    parts = []
    for _, r in guide.iterrows():
        if r["pick"] == r["best"]:
            detail = "the best mean; no cheaper method shown within the margin"
        else:
            detail = f"{r['expected_loss_points']:.2g} points below the best, `{r['best']}` at {r['best_mean']:.3g}"
        runner = f"; runner-up `{r['runner_up']}`" if isinstance(r.get("runner_up"), str) and r["runner_up"] else ""
        parts.append(f"{r['budget']} labels → `{r['pick']}` ({metric} {r['pick_mean']:.3g}, {detail}{runner}; build "
                     f"{seconds_text(r['pick_build_seconds'])}, serve {seconds_text(r['pick_serve_seconds_per_1000'])}"
                     " per 1,000 predictions)")
    return (f"**{task}**: the cheapest method shown no more than {margin:g} point{'s' if margin != 1 else ''} worse "
            "than the best (one-sided paired interval, Bonferroni over the task's decisions), else the best — "
            + "; ".join(parts) + ".")
