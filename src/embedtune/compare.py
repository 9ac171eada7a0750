"""Paired comparisons between methods, crossing budgets and cost ratios (shift: `robustness`).

Every method scores the same test examples on the same budget subsets and seeds, so differences are
paired. The interval of a difference (`paired_interval`) has two parts that add in quadrature:

- **seeds**: the S per-seed differences d_s (each on the whole test split) give the seed term
  t_{S−1, 0.975} · sd(d_s) / √S — a t quantile, so 3 seeds do not pretend to be many (a bootstrap over 3
  seeds understates that spread);
- **the shared test set**: the spread of d_s already holds each seed's own example noise, but not the
  test set every seed shares. Resampling test examples (one resample for both methods and all seeds)
  estimates it as the mean off-diagonal covariance of the resampled (d_s, d_t); its term is
  z_{0.975} · √cov.

With one seed (the single-seed budgets) the interval is the example bootstrap's normal interval. The
p-value is the interval's own: the level at which the interval just reaches 0. Two families per task
(`all_comparisons`): the comparisons with the probe, which the pages show, with simultaneous intervals
(Bonferroni over the family; the mark "significant" means that interval excludes 0, so mark and interval
agree), and the other pairs, with Holm's step-down correction within them. What to pick at a budget is a
different question, decided on the selection rows (`decision.py`). A test checks the interval's coverage
on a simulated paired problem with 3 seeds. Metrics here are `metrics.fast_metric`, NumPy versions of the
shipped `evaluate` modules (the tests check they agree).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .metrics import fast_metric
from .registry import METHOD_ORDER

# ------------------------------------------------------------------------------------- paired tests


@dataclass(frozen=True)
class Comparison:
    method_a: str
    method_b: str
    budget: int
    metric: str
    diff: float  # mean over seeds of A − B, in metric units (not points)
    low: float
    high: float
    n_seeds: int
    p_value: float | None = None
    p_holm: float | None = None  # Holm-adjusted within its family (all_comparisons)
    # the shown family (every method against the probe): the simultaneous interval, Bonferroni over its size
    family_size: int | None = None
    adj_low: float | None = None
    adj_high: float | None = None

    @property
    def significant(self) -> bool:
        """In the shown family: the simultaneous interval excludes 0 (the mark and the interval shown agree);
        otherwise Holm within the family of the other pairs."""
        if self.adj_low is not None and self.adj_high is not None:
            return self.adj_low > 0 or self.adj_high < 0
        if self.p_holm is not None:
            return self.p_holm < 0.05
        return self.low > 0 or self.high < 0

    def interval_text(self) -> str:
        if self.adj_low is not None and self.adj_high is not None:
            return (f"simultaneous 95% CI [{100 * self.adj_low:.1f}, {100 * self.adj_high:.1f}] over the "
                    f"{self.family_size} comparisons with the probe")
        return f"95% CI [{100 * self.low:.1f}, {100 * self.high:.1f}]"

    def verdict(self) -> str:
        d = 100 * self.diff
        if self.significant:
            winner, loser = (self.method_a, self.method_b) if d > 0 else (self.method_b, self.method_a)
            return (f"{winner} beats {loser} by {abs(d):.1f} points at {self.budget} labels, "
                    f"{self.interval_text()} ({self.method_a} − {self.method_b})")
        return (f"no significant difference between {self.method_a} and {self.method_b} at {self.budget} labels "
                f"({d:+.1f} points, {self.interval_text()})")


@dataclass(frozen=True)
class PairedSpread:
    """The parts of a paired difference's uncertainty (module docstring), in metric units."""

    observed: float  # mean over seeds of A − B
    se_seeds: float  # sd of the per-seed differences / √S (0 with one seed)
    sd_shared: float  # the shared test set's term
    df: int  # S − 1

    def half_width(self, alpha: float) -> float:
        """Half-width of the two-sided (1 − alpha) interval (one-sided bound at alpha / 2)."""
        return _half_width(alpha, self.se_seeds, self.sd_shared, self.df)

    def detectable(self, alpha: float, *, power: float = 0.8) -> float:
        """The smallest true difference a one-sided test at `alpha` finds with probability `power`:
        (q_{1−alpha} + q_{power}) on each term, t for the seeds, normal for the shared test set."""
        from scipy import stats

        t = float(stats.t.ppf(1 - alpha, self.df) + stats.t.ppf(power, self.df)) if self.df > 0 else 0.0
        z = float(stats.norm.ppf(1 - alpha) + stats.norm.ppf(power))
        return float(np.hypot(t * self.se_seeds, z * self.sd_shared))


def resampled_metric(metric: str, probs: np.ndarray, y: np.ndarray, index: np.ndarray,
                     thresholds: np.ndarray | None = None) -> np.ndarray:
    """`fast_metric` on every resample at once: `index` (B, n) holds each resample's rows; returns (B,).
    Accuracy and AUROC (single-label) are computed for all rows of `index` together, with the same arithmetic
    as `fast_metric` (ranks with ties averaged; sums of half-integers are exact), so the values are the same
    (tested); F1 (macro, micro, multi-label) from resampled counts (`_resampled_f1`); other metrics loop over
    the resamples."""
    probs, y = np.asarray(probs), np.asarray(y)
    if y.ndim == 1 and metric == "accuracy":
        return (probs.argmax(1)[index] == y[index]).mean(1)
    if y.ndim == 1 and metric == "auroc":
        from scipy.stats import rankdata

        columns = [1] if probs.shape[1] == 2 else list(range(probs.shape[1]))
        values = []
        for c in columns:
            positives = (y == c)[index]  # (B, n)
            n_pos = positives.sum(1)
            n_neg = index.shape[1] - n_pos
            ranks = rankdata(probs[:, c][index], method="average", axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                auc = ((ranks * positives).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
            values.append(np.where((n_pos == 0) | (n_neg == 0), np.nan, auc))
        if len(values) == 1:
            return values[0]
        with warnings.catch_warnings():  # a resample with a class absent from every column: nan, as fast_metric
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.stack(values), 0)
    if (metric == "macro_f1" and y.ndim == 1) or (metric in ("macro_f1", "micro_f1") and y.ndim == 2
                                                    and thresholds is not None):
        return _resampled_f1(metric, probs, y, index, thresholds)
    return np.array([fast_metric(metric, probs[rows], y[rows], thresholds) for rows in index])


def _resampled_f1(metric: str, probs: np.ndarray, y: np.ndarray, index: np.ndarray,
                  thresholds: np.ndarray | None) -> np.ndarray:
    """F1 of every resample from per-row indicators, as `fast_metric` counts them: a resample's true
    positives are ``C @ tp_rows`` with C (B, n) the number of times each row is drawn (integer sums, exact
    in float64). Multi-label adds LexGLUE's "none" label; single-label macro-F1 averages over the classes
    present in the resample's predictions or labels."""
    if y.ndim == 2:
        pred = (probs >= thresholds[None, :]).astype(np.int64)
        pred = np.concatenate([pred, (pred.sum(1) == 0)[:, None]], 1)
        ref = np.concatenate([y, (y.sum(1) == 0)[:, None]], 1).astype(np.int64)
    else:
        eye = np.eye(max(probs.shape[1], int(y.max()) + 1), dtype=np.int64)
        pred, ref = eye[probs.argmax(1)], eye[y]
    per_row = [(pred & ref).astype(np.float64), (pred & (1 - ref)).astype(np.float64),
               ((1 - pred) & ref).astype(np.float64)]  # each (n, L): tp, fp, fn
    n, out = index.shape[1], []
    for chunk in np.array_split(index, index.size // 4_000_000 + 1):  # C in blocks of ≤ 32 MB
        flat = (np.arange(len(chunk))[:, None] * n + chunk).ravel()
        counts = np.bincount(flat, minlength=len(chunk) * n).reshape(len(chunk), n).astype(np.float64)
        tp, fp, fn = (counts @ r for r in per_row)  # (b, L)
        if metric == "micro_f1":
            denom = 2 * tp.sum(1) + fp.sum(1) + fn.sum(1)
            out.append(np.where(denom > 0, 2 * tp.sum(1) / np.maximum(denom, 1), 0.0))
            continue
        denom = 2 * tp + fp + fn  # single-label: predicted + labelled count of the class
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        out.append(f1.mean(1) if y.ndim == 2 else f1.sum(1) / (denom > 0).sum(1))
    return np.concatenate(out)


def paired_spread(y: np.ndarray, probs_a: list[np.ndarray], probs_b: list[np.ndarray], *, metric: str,
                  thresholds_a: list[np.ndarray | None] | None = None,
                  thresholds_b: list[np.ndarray | None] | None = None, n_boot: int = 1000,
                  seed: int = 0) -> PairedSpread:
    """The mean difference A − B over seeds and its two uncertainty terms (module docstring)."""
    n_seeds = len(probs_a)
    thresholds_a = thresholds_a or [None] * n_seeds
    thresholds_b = thresholds_b or [None] * n_seeds
    per_seed = np.array([fast_metric(metric, a, y, ta) - fast_metric(metric, b, y, tb)
                         for a, b, ta, tb in zip(probs_a, probs_b, thresholds_a, thresholds_b)])
    observed = float(np.nanmean(per_seed))
    rng = np.random.default_rng(seed)
    n = len(y)
    index = rng.integers(0, n, (n_boot, n))  # row r: the r-th resample (the same stream as one draw per row)
    # per-seed differences on shared example resamples: (n_boot, n_seeds)
    boot = np.stack([resampled_metric(metric, probs_a[s], y, index, thresholds_a[s])
                     - resampled_metric(metric, probs_b[s], y, index, thresholds_b[s]) for s in range(n_seeds)], 1)
    boot = boot[~np.isnan(boot).any(axis=1)]
    if n_seeds == 1:
        var_shared, se_seeds = float(np.var(boot[:, 0], ddof=1)), 0.0
    else:
        # the spread of d_s across seeds already holds each seed's own example noise; what it cannot see is
        # the test set shared by every seed: the mean off-diagonal bootstrap covariance of (d_s, d_t)
        cov = np.cov(boot, rowvar=False)
        var_shared = max(0.0, float((cov.sum() - np.trace(cov)) / (n_seeds * (n_seeds - 1))))
        se_seeds = float(np.std(per_seed, ddof=1) / np.sqrt(n_seeds))
    return PairedSpread(observed, se_seeds, float(np.sqrt(var_shared)), n_seeds - 1)


def paired_interval(y: np.ndarray, probs_a: list[np.ndarray], probs_b: list[np.ndarray], *, metric: str,
                    thresholds_a: list[np.ndarray | None] | None = None,
                    thresholds_b: list[np.ndarray | None] | None = None, n_boot: int = 1000,
                    seed: int = 0) -> tuple[float, float, float, float]:
    """(mean difference A − B, 95% low, 95% high, two-sided p) with the seed and example terms of the
    module docstring."""
    spread = paired_spread(y, probs_a, probs_b, metric=metric, thresholds_a=thresholds_a,
                           thresholds_b=thresholds_b, n_boot=n_boot, seed=seed)
    half = spread.half_width(0.05)
    return (spread.observed, spread.observed - half, spread.observed + half,
            _p_value(spread.observed, spread.se_seeds, spread.sd_shared, spread.df))


def run_keys(preds: dict[str, np.ndarray], budget: int) -> list[str]:
    """The run keys (``s<seed>_b<budget>``) of one method's predictions at `budget`."""
    return sorted(k for k in preds if k.startswith("s") and k.endswith(f"_b{budget}"))


def _half_width(alpha: float, se_seeds: float, sd_shared: float, df: int) -> float:
    """Half-width of the (1 − alpha) interval: t_{df} on the seed term, z on the shared-test-set term."""
    from scipy import stats

    t = float(stats.t.ppf(1 - alpha / 2, df)) if df > 0 else 0.0
    return float(np.hypot(t * se_seeds, float(stats.norm.ppf(1 - alpha / 2)) * sd_shared))


def _p_value(observed: float, se_seeds: float, sd_shared: float, df: int) -> float:
    """The two-sided p-value of the interval itself: the alpha at which the (1 − alpha) interval just
    reaches 0. So p < 0.05 exactly when the 95% interval excludes 0 (a normal p-value on the combined
    standard error would ignore the t quantile of the seed term and call differences significant whose
    interval holds 0)."""
    from scipy.optimize import brentq

    if observed == 0 or not np.isfinite(observed):
        return 1.0
    if se_seeds == 0 and sd_shared == 0:
        return 0.0
    gap = lambda alpha: _half_width(alpha, se_seeds, sd_shared, df) - abs(observed)  # noqa: E731 (falls in alpha)
    tiny = 1e-12
    if gap(tiny) <= 0:
        return tiny
    if gap(1 - tiny) >= 0:
        return 1.0
    return float(brentq(gap, tiny, 1 - tiny, xtol=1e-10))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(p_values)
    order = np.argsort(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def load_predictions(results_dir: Path, method: str) -> dict[str, np.ndarray]:
    path = Path(results_dir) / "preds" / f"{method}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run the {method} stage first")
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def compare_methods(preds: dict[str, dict[str, np.ndarray]], *, method_a: str, method_b: str, metric: str,
                    n_boot: int = 1000, family_size: int | None = None) -> list[Comparison]:
    """Paired comparisons of A against B at every budget both have (same seeds, same test set); with
    `family_size`, also the simultaneous interval at 1 − 0.05 / family_size (Bonferroni)."""
    a, b = preds[method_a], preds[method_b]
    y = a["y_test"]
    budgets = sorted({int(k.split("_b")[1]) for k in a if k.startswith("s")} &
                     {int(k.split("_b")[1]) for k in b if k.startswith("s")})
    out = []
    for budget in budgets:
        keys = sorted(k for k in a if k.startswith("s") and k.endswith(f"_b{budget}") and k in b)
        spread = paired_spread(y, [a[k] for k in keys], [b[k] for k in keys], metric=metric,
                               thresholds_a=[a.get(f"thr_{k}") for k in keys],
                               thresholds_b=[b.get(f"thr_{k}") for k in keys], n_boot=n_boot)
        half = spread.half_width(0.05)
        adj = spread.half_width(0.05 / family_size) if family_size else None
        out.append(Comparison(method_a, method_b, budget, metric, spread.observed, spread.observed - half,
                              spread.observed + half, len(keys),
                              p_value=_p_value(spread.observed, spread.se_seeds, spread.sd_shared, spread.df),
                              family_size=family_size,
                              adj_low=None if adj is None else spread.observed - adj,
                              adj_high=None if adj is None else spread.observed + adj))
    return out


def crossing_budget(comparisons: list[Comparison]) -> int | None:
    """Smallest budget from which A beats B significantly at that and every larger budget that was run
    (None when A does not win at the largest budget). Monotone: adding a loss at a large budget can only
    remove the crossing, never move it earlier."""
    ordered = sorted(comparisons, key=lambda c: c.budget)
    crossing = None
    for c in reversed(ordered):
        if c.significant and c.diff > 0:
            crossing = c.budget
        else:
            break
    return crossing


def comparisons_frame(comparisons: list[Comparison]) -> pd.DataFrame:
    return pd.DataFrame([{"method_a": c.method_a, "method_b": c.method_b, "budget": c.budget, "metric": c.metric,
                          "diff_points": 100 * c.diff, "ci_low": 100 * c.low, "ci_high": 100 * c.high,
                          "p_value": c.p_value, "p_holm": c.p_holm, "family_size": c.family_size,
                          "ci_low_adj": None if c.adj_low is None else 100 * c.adj_low,
                          "ci_high_adj": None if c.adj_high is None else 100 * c.adj_high,
                          "significant": c.significant,
                          "n_seeds": c.n_seeds, "verdict": c.verdict()}
                         for c in comparisons])


# ------------------------------------------------------------------------------------- costs, curves


def load_results(results_dir: Path, methods: tuple[str, ...] = METHOD_ORDER) -> pd.DataFrame:
    frames = [pd.read_csv(Path(results_dir) / f"{m}.csv") for m in methods if (Path(results_dir) / f"{m}.csv").is_file()]
    if not frames:
        raise FileNotFoundError(f"no results under {results_dir}; run the probe and finetune stages first")
    return pd.concat(frames, ignore_index=True)


def summary_table(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and standard deviation of `metric` over seeds, per method × budget; a fit shared by seeds counts
    once (`tables.distinct_fits`)."""
    from .tables import distinct_fits

    table = distinct_fits(results).groupby(["method", "budget"])[metric].agg(["mean", "std", "count"]).reset_index()
    table["method"] = pd.Categorical(table["method"], [m for m in METHOD_ORDER if m in set(table["method"])])
    return table.sort_values(["method", "budget"]).reset_index(drop=True)


def cost_ratios(results: pd.DataFrame, *, reference: str = "probe") -> pd.DataFrame:
    """Per method and budget: median train seconds, peak memory, trainable params, FLOPs, and ratios to
    the reference method at the same budget."""
    cols = ["train_seconds", "train_flops", "infer_flops_per_row", "peak_mem_mib", "trainable_params"]
    cols = [c for c in cols if c in results]
    med = results.groupby(["method", "budget"])[cols].median().reset_index()
    ref = med[med["method"] == reference].set_index("budget")
    for col in cols:
        med[f"{col}_x_{reference}"] = [row[col] / ref.loc[row["budget"], col]
                                       if row["budget"] in ref.index and ref.loc[row["budget"], col] else np.nan
                                       for _, row in med.iterrows()]
    return med


def overfitting_gap(curves: pd.DataFrame) -> pd.DataFrame:
    """Train − validation main metric at each run's best epoch (running train metric), mean over seeds."""
    if curves.empty:
        return pd.DataFrame(columns=["method", "budget", "gap_points"])
    best = curves.loc[curves.groupby(["method", "seed", "budget"])["val_metric"].idxmax()]
    best = best.assign(gap_points=100 * (best["train_metric"] - best["val_metric"]))
    return best.groupby(["method", "budget"])["gap_points"].agg(["mean", "std"]).reset_index() \
        .rename(columns={"mean": "gap_points", "std": "gap_std"})


def all_comparisons(preds: dict[str, dict[str, np.ndarray]], *, metric: str,
                    n_boot: int = 1000) -> dict[tuple[str, str], list[Comparison]]:
    """Every pair of methods present (in METHOD_ORDER), A after B in that order. Two families: the pairs
    with the probe (what the pages show: simultaneous intervals, Bonferroni over its size) and the others
    (Holm within them)."""
    methods = [m for m in METHOD_ORDER if m in preds]

    def budgets(m: str) -> set[int]:
        return {int(k.split("_b")[1]) for k in preds[m] if k.startswith("s")}

    shown = sum(len(budgets(m) & budgets("probe")) for m in methods if m != "probe") if "probe" in preds else 0
    out = {}
    for i, b in enumerate(methods):
        for a in methods[i + 1:]:
            out[(a, b)] = compare_methods(preds, method_a=a, method_b=b, metric=metric, n_boot=n_boot,
                                          family_size=shown if "probe" in (a, b) and shown else None)
    probe_pairs = {k: v for k, v in out.items() if "probe" in k}
    return {**with_holm(probe_pairs), **with_holm({k: v for k, v in out.items() if "probe" not in k})}


def with_holm(family: dict[tuple[str, str], list[Comparison]]) -> dict[tuple[str, str], list[Comparison]]:
    """The same comparisons with Holm-adjusted p-values over the whole family (one report)."""
    from dataclasses import replace

    flat = [(key, i, c) for key, comps in family.items() for i, c in enumerate(comps) if c.p_value is not None]
    adjusted = holm([c.p_value for _, _, c in flat]) if flat else []
    out = {key: list(comps) for key, comps in family.items()}
    for (key, i, c), p in zip(flat, adjusted):
        out[key][i] = replace(c, p_holm=p)
    return out


def headline_budget(results: pd.DataFrame) -> int:
    """The largest budget every method ran with every seed (single-seed budgets are not shared)."""
    n_seeds = results["seed"].nunique()
    counts = results.groupby(["method", "budget"], observed=True)["seed"].nunique().unstack("method")
    full = counts[(counts == n_seeds).all(axis=1)]
    common = full.index if len(full) else counts.dropna().index
    return int(max(common))


def headline(results: pd.DataFrame, metric: str) -> dict[str, Any]:
    """Mean metric per method at the headline budget (`headline_budget`) and at all labels."""
    from .tables import distinct_fits

    budget = headline_budget(results)
    at = distinct_fits(results[results["budget"] == budget]).groupby("method")[metric].agg(["mean", "std"])
    largest = int(results["budget"].max())
    at_all = distinct_fits(results[results["budget"] == largest]).groupby("method", observed=True)[metric].agg(
        ["mean", "count"])  # seeds: distinct fits (the probe's all-label fit is one, shared by every seed)
    return {"budget": int(budget), "metric": metric,
            "methods": {m: {"mean": float(r["mean"]), "std": float(r["std"]) if pd.notna(r["std"]) else 0.0}
                        for m, r in at.iterrows()},
            "all_labels": {"budget": largest, "methods": {m: {"mean": float(r["mean"]), "seeds": int(r["count"])}
                                                         for m, r in at_all.iterrows()}}}


def readable(frame: pd.DataFrame, *, missing: str = "—") -> pd.DataFrame:
    """A table for display: every empty cell (a method not run at that budget, a quantity that does not apply,
    a spread over one seed) reads `missing` instead of NaN. The numbers themselves are untouched."""
    if not isinstance(frame, pd.DataFrame):
        return frame
    return frame.astype(object).where(frame.notna(), missing)


def pareto_front(points: np.ndarray) -> list[int]:
    """Indices of points (cost, quality) not dominated by a cheaper-or-equal, better-or-equal point."""
    front = []
    for i, (c, q) in enumerate(points):
        dominated = any((c2 <= c and q2 >= q) and (c2 < c or q2 > q) for j, (c2, q2) in enumerate(points) if j != i)
        if not dominated and np.isfinite(c) and np.isfinite(q):
            front.append(i)
    return front
