"""What to pick at each label budget, decided on the selection rows and reported on the test split.

Rule (per task and budget), using only the selection rows (the validation rows every method selected its
hyperparameters on; each run's kept predictions on them are stored beside its test predictions):
1. **Scores.** Each run's main metric on the selection rows (its own thresholds); a method's score is the
   mean over its seeds. The **best** is the highest.
2. **Resampling.** ``n_boot`` draws, each resampling the selection rows (one draw shared by every method:
   the rows are shared) and adding a seed term per method (its seeds' standard error × a Student t with
   S − 1 degrees of freedom). Each draw gives every method a mean.
3. **Tied with the best** (comparison with the best; the family is the K − 1 comparisons of the other
   methods with the best at this budget, Bonferroni): a method is shown worse than the best when the
   lower ``alpha / (K − 1)`` quantile of (best − method) over the draws is above 0; the others are tied.
4. **P(best)**: the share of draws in which a method has the highest mean. **Expected loss**: the mean over
   draws of (highest mean − the method's mean), in points.
5. **Pick**: the cheapest method to build (measured, median over seeds) among the tied ones whose expected
   loss is within ``decision.margin_points``; when none is, the tied method with the smallest expected loss.
6. **Report**: the pick's test score (mean over its seeds) is then an unbiased report, never an input.
A simulation with a known truth (tests/test_decision_rule.py) measures the rule's regret and how often its
pick is within the margin of the truly best.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from .compare import resampled_metric
from .metrics import fast_metric
from .registry import METHOD_ORDER
from .tables import distinct_fits, pick_flagged, pick_shortfall_points, points_text, vs_probe

ALPHA = 0.05


def cost_to_build(results: pd.DataFrame, *, embed_seconds_per_row: float | None, n_val: int,
                  search_seconds: dict[tuple[str, int], float] | None = None) -> pd.Series:
    """Seconds to build each run's model, labelling aside: embedding the rows it needs (probe: budget +
    selection rows) + fitting, or the whole training run (tuned methods; partial adds its lower blocks;
    lp_ft adds the probe it starts from, same seed and budget). A tuned method also carries its learning-rate
    search at the searched budget whose pick it uses (`search_seconds[(method, searched budget)]`: every
    tried rate's run), since reproducing the choice costs that search."""
    from .plan import nearest_searched

    cost = results["train_seconds"].astype(float).copy()
    method = results["method"].astype(str)
    probe = method == "probe"
    if embed_seconds_per_row is not None:
        cost[probe] += embed_seconds_per_row * (results.loc[probe, "budget"].astype(float) + n_val)
    if "lower_blocks_seconds_per_row" in results:
        part = method == "partial"
        cost[part] += results.loc[part, "lower_blocks_seconds_per_row"].astype(float) * (
            results.loc[part, "budget"].astype(float) + n_val)
    probe_cost = {(int(s), int(b)): float(c) for s, b, c in zip(results.loc[probe, "seed"], results.loc[probe, "budget"],
                                                                  cost[probe])}
    lp_ft = method == "lp_ft"
    cost[lp_ft] += [probe_cost.get((int(s), int(b)), np.nan)
                    for s, b in zip(results.loc[lp_ft, "seed"], results.loc[lp_ft, "budget"])]
    for m in set(method) & {key[0] for key in (search_seconds or {})}:
        searched = sorted(b for mm, b in search_seconds if mm == m)
        rows = method == m
        cost[rows] += [search_seconds[(m, nearest_searched(int(b), searched))] for b in results.loc[rows, "budget"]]
    return cost


def search_seconds(hparams: pd.DataFrame) -> dict[tuple[str, int], float]:
    """Training seconds of each tuned method's learning-rate search per searched budget (hparams.csv rows
    with ``train_seconds``; probe and classic rows have none: their C search is inside their fit)."""
    if hparams.empty or "train_seconds" not in hparams:
        return {}
    rows = hparams[hparams["hyperparameter"] == "lr"].dropna(subset=["train_seconds"])
    return {(str(m), int(b)): float(v) for (m, b), v in rows.groupby(["method", "budget"])["train_seconds"].sum().items()}


def selection_runs(preds: dict[str, np.ndarray], budget: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """One method's (selection-row probabilities, thresholds) per seed at `budget`."""
    keys = sorted(k for k in preds if k.startswith("s") and k.endswith(f"_b{budget}"))
    missing = [k for k in keys if f"val_{k}" not in preds]
    if missing:
        raise ValueError(f"no selection-row predictions for runs {missing}: the decision is made on them; re-run the "
                         "probe and finetune stages (dvc repro probe finetune), which store them as val_<run>")
    return [(preds[f"val_{k}"], preds.get(f"thr_{k}")) for k in keys]


def resample_means(runs: dict[str, list[tuple[np.ndarray, np.ndarray | None]]], y_val: np.ndarray, *,
                   metric: str, n_boot: int = 500, seed: int = 0) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Observed mean selection score per method, and `n_boot` draws of it (module docstring, 1–2): the rows
    resampled (one draw shared by every method), plus a seed term per method, its seeds' standard error
    times a Student t with S − 1 degrees of freedom (a bootstrap over 3 seeds would understate it; with one
    seed there is no seed term)."""
    from scipy import stats

    y_val = np.asarray(y_val)
    y_val = y_val.astype(np.int64) if y_val.ndim == 1 else y_val
    rng = np.random.default_rng(seed)
    per_seed = {m: np.array([fast_metric(metric, np.asarray(p), y_val, t) for p, t in r]) for m, r in runs.items()}
    observed = {m: float(np.mean(v)) for m, v in per_seed.items()}
    seed_se = {m: float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0 for m, v in per_seed.items()}
    t_draws = {m: stats.t.rvs(df=max(len(v) - 1, 1), size=n_boot, random_state=rng) for m, v in per_seed.items()}
    index = rng.integers(0, len(y_val), (n_boot, len(y_val)))  # row b: draw b's rows (the stream of one draw per b)
    draws = {}
    with warnings.catch_warnings():  # a draw where every seed's score is undefined stays nan
        warnings.simplefilter("ignore", RuntimeWarning)
        for m, r in runs.items():
            scores = np.stack([resampled_metric(metric, np.asarray(p), y_val, index, t) for p, t in r])  # (S, B)
            draws[m] = np.nanmean(scores, 0) + seed_se[m] * t_draws[m]
    return observed, draws


def decide(observed: dict[str, float], draws: dict[str, np.ndarray], build: dict[str, float], *,
           margin_points: float, alpha: float = ALPHA) -> dict[str, Any]:
    """Best, tied set, P(best), expected loss and the pick (module docstring, 1 and 3–5)."""
    methods = list(observed)
    best = max(methods, key=lambda m: observed[m])
    stack = np.vstack([draws[m] for m in methods])  # (K, B)
    top = stack.max(axis=0)
    p_best = {m: float(np.mean(stack.argmax(axis=0) == i)) for i, m in enumerate(methods)}
    loss = {m: 100 * float(np.mean(top - draws[m])) for m in methods}
    level = alpha / max(len(methods) - 1, 1)
    lower = {m: 100 * float(np.quantile(draws[best] - draws[m], level)) for m in methods if m != best}
    sd = {m: 100 * float(np.std(draws[best] - draws[m], ddof=1)) for m in methods if m != best}
    tied = [m for m in methods if m == best or lower[m] <= 0]  # in the given (cost) order
    within = [m for m in tied if loss[m] <= margin_points]
    pick = min(within, key=lambda m: build[m]) if within else min(tied, key=lambda m: loss[m])
    return {"best": best, "pick": pick, "tied": tied, "p_best": p_best, "expected_loss": loss,
            "lower_vs_best": lower, "sd_vs_best": sd, "alpha_per_test": level}


def _detectable(sd_points: list[float], level: float, power: float = 0.8) -> float:
    from scipy import stats

    z = float(stats.norm.ppf(1 - level) + stats.norm.ppf(power))
    return float(np.median([z * s for s in sd_points])) if sd_points else float("nan")


def decision_guide(results: pd.DataFrame, preds: dict[str, dict[str, np.ndarray]], *, metric: str,
                   embed_seconds_per_row: float | None, margin: float = 1.0, alpha: float = ALPHA,
                   n_boot: int = 500, seed: int = 0,
                   search: dict[tuple[str, int], float] | None = None,
                   comparisons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per budget: the pick made on the selection rows (module docstring), the set tied with the best, P(best)
    and expected loss per method, the pick's test score, its gain over the probe on test — the paired
    difference of `comparisons` (compare's pairs with the probe, as every page shows it; NaN without them or
    where the pick is the probe) — and costs."""
    n_val = int(results["n_val"].dropna().iloc[0]) if "n_val" in results and results["n_val"].notna().any() else 0
    frame = results.assign(build_seconds=cost_to_build(results, embed_seconds_per_row=embed_seconds_per_row,
                                                       n_val=n_val, search_seconds=search),
                           method=results["method"].astype(str))
    rows = []
    for budget in sorted(int(b) for b in frame["budget"].unique()):
        group = frame[frame["budget"] == budget]
        flops = {c: (c, "median") for c in ("train_flops", "infer_flops_per_row") if c in group}
        stats = group.groupby("method").agg(test=(metric, "mean"), build=("build_seconds", "median"),
                                            serve=("infer_ms_per_1000", "median"),
                                            **flops)
        stats["seeds"] = distinct_fits(group).groupby("method")["seed"].nunique()  # a shared fit counts once
        stats = stats.loc[[m for m in METHOD_ORDER if m in stats.index and m in preds]]
        runs = {m: selection_runs(preds[m], budget) for m in stats.index}
        y_val = next(preds[m]["y_val"] for m in stats.index)
        observed, draws = resample_means(runs, y_val, metric=metric, n_boot=n_boot, seed=seed + budget)
        got = decide(observed, draws, {m: float(stats.loc[m, "build"]) for m in stats.index},
                     margin_points=margin, alpha=alpha)
        pick, best = got["pick"], got["best"]
        ranked = sorted(stats.index, key=lambda m: -got["p_best"][m])
        runner_up = next((m for m in ranked if m != best), "")  # the most likely best after the best
        paired = vs_probe(comparisons, pick, budget) if comparisons is not None and pick != "probe" else None
        probe_gain = float(paired["diff_points"]) if paired is not None else np.nan
        rows.append({
            "budget": budget, "rule_source": "selection rows", "n_selection_rows": len(y_val),
            "pick": pick, "pick_mean": float(stats.loc[pick, "test"]), "pick_seeds": int(stats.loc[pick, "seeds"]),
            "pick_selection_mean": observed[pick], "expected_loss_points": got["expected_loss"][pick],
            "best": best, "best_selection_mean": observed[best], "best_mean": float(stats.loc[best, "test"]),
            "tied": ", ".join(got["tied"]), "runner_up": runner_up,
            "runner_up_mean": float(stats.loc[runner_up, "test"]) if runner_up else np.nan,
            "pick_gain_over_probe_points": probe_gain,
            "margin_points": margin, "alpha_per_test": got["alpha_per_test"],
            "family": f"{len(stats.index) - 1} comparisons with the best at this budget (Bonferroni)",
            "detectable_points": _detectable(list(got["sd_vs_best"].values()), got["alpha_per_test"]),
            "pick_build_seconds": float(stats.loc[pick, "build"]),
            "pick_serve_seconds_per_1000": float(stats.loc[pick, "serve"]) / 1000,
            # FLOPs travel between machines where seconds do not (classic's TF-IDF fit is not counted: NaN)
            "pick_train_flops": float(stats.loc[pick, "train_flops"]) if "train_flops" in stats else np.nan,
            "pick_infer_flops_per_row": float(stats.loc[pick, "infer_flops_per_row"])
            if "infer_flops_per_row" in stats else np.nan,
            **{f"p_best {m}": got["p_best"][m] for m in stats.index},
            **{f"expected_loss {m}": got["expected_loss"][m] for m in stats.index},
            **{f"selection {m}": observed[m] for m in stats.index},
            **{f"test {m}": float(stats.loc[m, "test"]) for m in stats.index},
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


def _names(methods: list[str]) -> str:
    quoted = [f"`{m}`" for m in methods]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def budget_sentence(r: Any, metric: str) -> str:
    """One decision a team can act on: who ties on the selection rows, what is picked and why, its test score."""
    tied = [m for m in str(r["tied"]).split(", ") if m]
    who = (f"`{r['best']}` is ahead of every other method (P(best) {r[f'p_best {r.best}']:.2f})" if len(tied) == 1
           else f"{_names(tied)} cannot be told apart")
    if r["expected_loss_points"] > r["margin_points"]:  # no tied method within the margin (decide, step 5)
        why = (f"no tied method is within {r['margin_points']:g} point of expected loss; the smallest, "
               f"{r['expected_loss_points']:.1f} points: the seeds and rows cannot separate them")
    elif r["pick"] != r["best"]:
        why = (f"the cheapest to build of the tied methods within {r['margin_points']:g} point of expected loss "
               f"against the best: {r['expected_loss_points']:.1f}")
    elif len(tied) > 1:
        why = "the best; no cheaper tied method is within the margin"
    else:
        why = "the best"
    gain = (f", {points_text(r['pick_gain_over_probe_points'])} points over the probe"
            if pd.notna(r.get("pick_gain_over_probe_points")) else "")
    return (f"At {int(r['budget']):,} labels {who} on the selection rows; pick `{r['pick']}` ({why}): test {metric} "
            f"{r['pick_mean']:.3f} over {int(r['pick_seeds'])} seed{'s' if int(r['pick_seeds']) != 1 else ''}{gain}; "
            f"build {seconds_text(r['pick_build_seconds'])}, serve {seconds_text(r['pick_serve_seconds_per_1000'])} "
            "per 1,000 predictions.")


def guide_sentence(task: str, guide: pd.DataFrame, metric: str) -> str:
    """The task's decisions, one sentence per budget (`budget_sentence`), under the rule's one-line summary."""
    if guide.empty:
        return f"**{task}**: no decision guide (no results)."
    margin = float(guide["margin_points"].iloc[0]) if "margin_points" in guide else 1.0
    return (f"**{task}** ({metric}; picked on the selection rows: the cheapest method tied with the best within "
            f"{margin:g} point{'s' if margin != 1 else ''} of expected loss, then reported on test): "
            + " ".join(budget_sentence(r, metric) for _, r in guide.iterrows()))


def selection_test_findings(guide: pd.DataFrame | None) -> list[str]:
    """Budgets where the pick, made on the selection rows, scores more than the margin below the best test
    mean. The rule never reads test; this is the report that says when the selection rows and the test split
    disagree, with each method's selection − test gap (points, mean over seeds) so a reader sees which method
    the selection rows overrate. Reads decision.csv's ``selection <m>`` and ``test <m>`` columns."""
    if guide is None or guide.empty or "margin_points" not in guide:
        return []
    out: list[str] = []
    for _, row in guide.iterrows():
        methods = [c.removeprefix("test ") for c in guide.columns if c.startswith("test ")]
        test = {m: row[f"test {m}"] for m in methods if pd.notna(row[f"test {m}"])
                and pd.notna(row.get(f"selection {m}"))}
        selection = {m: row[f"selection {m}"] for m in test}
        pick = row["pick"]
        if pick not in test or not pick_flagged(row):  # the answer table's † marks the same budgets
            continue
        test_best, shortfall = max(test, key=test.get), pick_shortfall_points(row)
        gaps = ", ".join(f"`{m}` {(selection[m] - test[m]) * 100:+.1f}"
                         for m in sorted(test, key=lambda m: test[m] - selection[m]))
        out.append(f"At {int(row['budget'])} labels the selection rows pick `{pick}` (selection {selection[pick]:.3f}), "
                   f"but on test it scores {test[pick]:.3f}, {shortfall:.1f} points below `{test_best}` "
                   f"({test[test_best]:.3f}), more than the {float(row['margin_points']):g}-point margin. "
                   f"Selection − test per method (points, mean over seeds): {gaps}.")
    return out
