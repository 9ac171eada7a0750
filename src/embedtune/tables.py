"""Tables a reader sees (summary page, index, compare page), with every number rounded to what it can
support: metrics at 3 significant digits, ratios, seconds and every other quantity at 2, counts exact below
a million, larger quantities with M/G/T/P at 3 (`readable`). No cell on a page carries more than 4 significant digits.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .registry import METHOD_ORDER, METRIC_NAMES, TUNED_METHODS

METRIC_WORDS = (*METRIC_NAMES, "val_score", "mean", "pick_mean", "best_mean", "runner_up_mean", "clean", "shifted")


LARGE = ((1e15, " P"), (1e12, " T"), (1e9, " G"), (1e6, " M"))
NOISE = 1e-9  # below this a shown number is float noise (a deterministic spread of 1e-16), shown as 0


def significant(value: float, digits: int) -> str:
    """`value` at `digits` significant digits, without exponent: a million and more with M / G / T / P (one
    notation per column: FLOPs read "1.76 M" and "7.00 G", never "1.76e+06"), float noise as 0."""
    if abs(value) < NOISE or not math.isfinite(value):
        return "0" if math.isfinite(value) else str(value)
    for size, suffix in LARGE:
        if abs(value) >= size:
            return significant(value / size, digits) + suffix
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -4:
        return f"{value:.{digits - 1}e}"
    places = digits - 1 - magnitude  # negative: round to tens, hundreds, ...
    if abs(round(value, places)) >= 10 ** (magnitude + 1):  # 0.9999 at 2 digits is "1.0", not "1.00"
        places -= 1
    return f"{round(value, places):.{max(places, 0)}f}"


def ratio_text(value: float) -> str:
    """A ratio at 2 significant digits with "×"; a real ratio is never float noise, so a tiny one keeps its
    value ("1.2e-10×") where `significant` would show 0."""
    return f"{significant(value, 2) if abs(value) >= NOISE else f'{value:.1e}'}×"


def count_text(value: float) -> str:
    """A count: exact with thousands separators below a million (10199 → "10,199", a budget or a parameter
    count a reader compares across pages), else 3 significant digits with M / G (22713216 → "22.7 M")."""
    if abs(value) >= 1e6:
        return significant(value, 3)
    return f"{value:,.0f}"


# a column as a page heads it (`header_text`); a method name stays as the registry spells it
HEADERS = {
    "pick_mean": "pick: test mean", "pick_seeds": "pick: seeds", "pick_gain_over_probe_points": "pick − probe (points)",
    "expected_loss_points": "expected loss (points)", "detectable_points": "detectable difference (points)",
    "runner_up": "runner-up", "pick_build_seconds": "pick: build (s)", "pick_train_flops": "pick: train FLOPs",
    "pick_serve_seconds_per_1000": "pick: serve (s per 1,000)", "pick_infer_flops_per_row": "pick: FLOPs per prediction",
    "train_seconds": "train (s)", "train_flops": "train FLOPs", "infer_flops_per_row": "FLOPs per prediction",
    "peak_mem_mib": "peak process RSS (MiB)", "trainable_params": "trainable parameters",
    "gap_points": "train − validation gap (points)", "gap_std": "gap sd (points)", "val_score": "validation score",
    "edge_limited": "at the grid's edge", "n_val": "validation rows", "diff_drop_points": "drop difference (points)",
    "ci_low": "95% CI low", "ci_high": "95% CI high", "n": "pairs", "headline_budget": "headline labels",
    "metric_at_headline": "metric at headline labels", "gain_vs_probe_points": "gain over probe (points)",
    "train_time_x_probe": "training seconds × probe (no embedding pass, no LR search)", "peak_memory_x_probe": "peak process RSS × probe",
    "trainable_params_x_probe": "trainable parameters × probe", "overfitting_gap_points": "train − validation gap (points)",
    "shift_drop_points": "drop under shift (points)", "ece": "ECE", "auroc": "AUROC", "macro_f1": "macro-F1",
    "micro_f1": "micro-F1", "budget": "labels",
}


def header_text(column: Any) -> str:
    """A column heading in words: `HEADERS`, a ratio ``<quantity>_x_probe`` as "<quantity> × probe", a method
    name as it is, else snake_case → spaces."""
    c = str(column)
    if c in METHOD_ORDER:
        return c
    if c in HEADERS:
        return HEADERS[c]
    if c.endswith("_x_probe"):
        return header_text(c.removesuffix("_x_probe")) + " × probe"
    return c.replace("_", " ")


def points_text(value: float) -> str:
    """A signed difference in points at one decimal, as every page shows it; a value that rounds to zero reads
    "+0.0", never "-0.0"."""
    text = f"{value:+.1f}"
    return "+0.0" if text == "-0.0" else text


def _is_metric(column: str) -> bool:
    words = str(column).replace(" ", "_").split("_")
    return any(str(column).startswith(m) or m in str(column) for m in METRIC_WORDS) and "points" not in words \
        and "seconds" not in words and "x" not in words


INTERVAL_COLUMNS = ("ci_low", "ci_high", "ci_low_adj", "ci_high_adj")  # bounds of a difference in points
# yes / no columns, stored as bool or, beside a missing value, as 0.0 / 1.0
FLAG_COLUMNS = ("still_improving", "learned", "chosen", "edge_limited", "significant", "c_edge_limited",
                "lambda_edge_limited")


def cell_text(value: Any, column: str, *, missing: str = "—") -> Any:
    """One cell as a reader sees it (module docstring)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, bool) or (column in FLAG_COLUMNS and value in (0, 1)):
        return "yes" if value else "no"  # a flag in words, not True / False or a float 1.0 beside a 0
    if isinstance(value, str):
        return value
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return count_text(float(value))  # a count or budget: exact (5477 stays 5,477, never "5500")
    if isinstance(value, float) and (column.replace(")", "").endswith("points") or column in INTERVAL_COLUMNS):
        return f"{value:.1f}".replace("-0.0", "0.0")  # points of a metric: one decimal, as every sentence
    if isinstance(value, float):
        return significant(value, 3 if _is_metric(column) else 2)
    return value


def readable(frame: pd.DataFrame, *, missing: str = "—") -> pd.DataFrame:
    """Every cell of `frame` as text a reader sees (module docstring); a missing value reads `missing`."""
    out = frame.copy().astype(object)
    for col in out.columns:
        out[col] = [cell_text(v.item() if hasattr(v, "item") else v, str(col), missing=missing) for v in out[col]]
    return out


def vs_probe(comparisons: pd.DataFrame, method: str, budget: int) -> pd.Series | None:
    """The comparison `method` − probe at `budget` (a stored probe − method row is turned around)."""
    hit = comparisons[(comparisons["method_a"] == method) & (comparisons["method_b"] == "probe")
                      & (comparisons["budget"] == budget)]
    if len(hit):
        return hit.iloc[0]
    back = comparisons[(comparisons["method_a"] == "probe") & (comparisons["method_b"] == method)
                       & (comparisons["budget"] == budget)]
    if not len(back):
        return None
    row = back.iloc[0].copy()
    row["method_a"], row["method_b"] = method, "probe"
    row["diff_points"], row["ci_low"], row["ci_high"] = -row["diff_points"], -row["ci_high"], -row["ci_low"]
    if "ci_low_adj" in row and pd.notna(row["ci_low_adj"]):
        row["ci_low_adj"], row["ci_high_adj"] = -row["ci_high_adj"], -row["ci_low_adj"]
    return row


def gain_text(row: pd.Series) -> str:
    """A comparison with the probe as every page shows it: the difference (points) with its simultaneous
    interval where the family has one (else the per-comparison one), ``*`` when that interval excludes 0."""
    adj = "ci_low_adj" in row and pd.notna(row["ci_low_adj"])
    lo, hi = (row["ci_low_adj"], row["ci_high_adj"]) if adj else (row["ci_low"], row["ci_high"])
    return (f"{points_text(row['diff_points'])} [{points_text(lo)}, {points_text(hi)}]"
            + ("*" if bool(row["significant"]) else ""))


def summary_table(per_task: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per task × method with fixed column names; a missing cell says why."""
    rows = []
    for task, t in per_task.items():
        headline, comparisons = t["headline"], t["comparisons"]
        results = distinct_fits(t["results"])  # a fit shared by seeds counts once in a mean ± sd
        metric, budget = headline["metric"], int(headline["budget"])
        all_budget = int(headline.get("all_labels", {}).get("budget", results["budget"].max()))
        costs = results.assign(method=results["method"].astype(str)).groupby(["method", "budget"]).median(
            numeric_only=True)
        drops = headline.get("shift_drop_points", {})
        for method in [m for m in METHOD_ORDER if m in set(results["method"].astype(str))]:
            at = results[(results["method"].astype(str) == method) & (results["budget"] == budget)]
            at_all = results[(results["method"].astype(str) == method) & (results["budget"] == all_budget)]
            row: dict[str, Any] = {"task": task, "method": method, "metric": metric, "headline_budget": budget,
                                   "metric_at_headline": _mean_sd(at[metric]),
                                   "metric_at_all_labels": _mean_sd(at_all[metric]) if len(at_all) else "not run"}
            if method == "probe":
                row["gain_vs_probe_points"] = "reference"
            else:
                c = vs_probe(comparisons, method, budget)
                row["gain_vs_probe_points"] = (gain_text(c) if c is not None else "no paired comparison")
            cross = headline.get("crossing_budget", {})
            row["crossing_budget"] = (("none" if cross.get(method) is None else cross[method])
                                      if method in cross else "—  (not a tuned method)")
            for col, name in (("train_seconds", "train_time_x_probe"), ("peak_mem_mib", "peak_memory_x_probe"),
                              ("trainable_params", "trainable_params_x_probe")):
                try:
                    row[name] = float(costs.loc[(method, budget), col] / costs.loc[("probe", budget), col])
                except KeyError:
                    row[name] = "no probe run at this budget"
            gap = t.get("gap")
            g = gap[(gap["method"] == method) & (gap["budget"] == budget)] if gap is not None and len(gap) else []
            row["overfitting_gap_points"] = float(g["gap_points"].iloc[0]) if len(g) else \
                "no training curve (probe and classic are fitted, not trained)"
            row["ece"] = float(at["ece"].mean()) if "ece" in at and at["ece"].notna().any() else \
                "not defined for multi-label"
            row["shift_drop_points"] = float(drops[method]) if method in drops else "no shift scores"
            rows.append(row)
    return pd.DataFrame(rows)


def _mean_sd(values: pd.Series) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "no run"
    if len(values) == 1:
        return f"{significant(values.iloc[0], 3)} (1 seed)"
    return f"{significant(values.mean(), 3)} ± {significant(values.std(ddof=1), 2)} ({len(values)} seeds)"


def paired_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Every method against the probe, one row per method and one column per budget: the paired difference
    in points with its simultaneous 95% interval (Bonferroni over these comparisons), ``*`` when that
    interval excludes 0: the mark and the interval agree (compare's statistics)."""
    rows: dict[str, dict[str, str]] = {}
    for _, r in comparisons.iterrows():
        if "probe" not in (r["method_a"], r["method_b"]) or r["method_a"] == r["method_b"]:
            continue
        sign = 1.0 if r["method_a"] != "probe" else -1.0  # oriented as method − probe
        method = r["method_a"] if sign > 0 else r["method_b"]
        adjusted = "ci_low_adj" in r and pd.notna(r["ci_low_adj"])
        lo_col, hi_col = ("ci_low_adj", "ci_high_adj") if adjusted else ("ci_low", "ci_high")
        low, high = sorted((sign * r[lo_col], sign * r[hi_col]))
        cell = (f"{points_text(sign * r['diff_points'])} [{points_text(low)}, {points_text(high)}]"
                + ("*" if bool(r["significant"]) else ""))
        rows.setdefault(str(method), {})[int(r["budget"])] = cell
    if not rows:
        return pd.DataFrame()
    budgets = sorted({b for cells in rows.values() for b in cells})
    order = [m for m in METHOD_ORDER if m in rows]
    return pd.DataFrame([{"method − probe": m, **{f"{count_text(b)} labels": rows[m].get(b, "not run") for b in budgets}}
                         for m in order])


def readable_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Standard-deviation columns as text for display: a single-seed cell reads "— (1 seed)", not NaN, and
    the spread of identical values reads 0, not the float residue of their mean (1e-16)."""
    out = table.copy()
    for col in [c for c in out.columns if str(c).split(" ")[-1] == "std"]:
        out[col] = [("0" if abs(v) < 1e-12 else significant(v, 2)) if pd.notna(v) else "— (1 seed)"
                    for v in out[col]]
    return out


def _summary(frame: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    cols = [m for m in metrics if m in frame]
    agg = frame.groupby(["method", "budget"])[cols + ["train_seconds"]].agg(["mean", "std"])
    agg.columns = [f"{a} {b}" for a, b in agg.columns]
    return readable_spread(agg.reset_index())


def published_reference() -> pd.DataFrame:
    """Published test numbers on the same data (source: the data mirror's README and the cited papers)."""
    return pd.DataFrame([
        {"task": "medical (PneumoniaMNIST)", "model": "ResNet-18 (28 px), from scratch, all 4,708 official train labels (before this repo's duplicate removal)",
         "metric": "AUROC / accuracy", "value": "0.944 / 0.854", "source": "MedMNIST v2, Yang et al., Sci. Data 2023"},
        {"task": "medical (PneumoniaMNIST)", "model": "ResNet-50 (224 px), from scratch, all labels",
         "metric": "AUROC / accuracy", "value": "0.962 / 0.884", "source": "MedMNIST v2"},
        {"task": "legal (UNFAIR-ToS)", "model": "TF-IDF + SVM, all 5,532 official train labels (before this repo's duplicate removal)", "metric": "micro-F1 / macro-F1",
         "value": "95.4 / 78.8", "source": "LexGLUE, Chalkidis et al., ACL 2022"},
        {"task": "legal (UNFAIR-ToS)", "model": "BERT-base fine-tuned, all labels", "metric": "micro-F1 / macro-F1",
         "value": "95.6 / 81.3", "source": "LexGLUE"},
        {"task": "legal (UNFAIR-ToS)", "model": "Legal-BERT fine-tuned, all labels", "metric": "micro-F1 / macro-F1",
         "value": "96.0 / 83.0", "source": "LexGLUE"},
    ])


def distinct_fits(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of `frame` less the copies of one shared fit: seeds with the same rows share one deterministic
    probe fit (``fit_seed`` names whose; a row without it is its own seed's), which counts once in a mean, an
    sd or a seed count."""
    if "fit_seed" not in frame:
        return frame
    fit_seed = frame["fit_seed"].fillna(frame["seed"])
    return frame[~frame.assign(fit_seed=fit_seed).duplicated(["method", "budget", "fit_seed"])]


def method_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of every recorded metric, seconds and FLOPs, per method × budget; ``seeds``
    counts distinct fits (seeds that share one deterministic fit count once)."""
    from .registry import METRIC_NAMES

    cols = [c for c in (*METRIC_NAMES, "train_seconds", "train_flops") if c in frame and frame[c].notna().any()]
    # a fit shared by seeds with the same rows (the probe's "all" budget: ``fit_seed``) counts once
    fits = distinct_fits(frame)
    grouped = fits.groupby(["method", "budget"])[cols]
    mean, sd, seeds = grouped.mean(), grouped.std(), fits.groupby(["method", "budget"])["seed"].nunique()
    out = pd.DataFrame({"method": [m for m, _ in mean.index], "budget": [count_text(b) for _, b in mean.index],
                        "seeds": seeds.to_numpy()})
    for c in cols:  # one cell per quantity: "mean ± sd" (one seed: the mean alone), one notation per column
        out[c] = [
            cell_text(float(m), c) if pd.isna(d) else f"{cell_text(float(m), c)} ± {significant(float(d), 2)}"
            for m, d in zip(mean[c], sd[c])]
    return out


def stopping_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per tuned run at each budget: epochs of its training rows seen, the evaluation it kept and why it
    stopped (``stop_reason``), summarised per budget (counts of each reason, range of epochs)."""
    if "stop_reason" not in frame:
        return pd.DataFrame()
    rows = []
    for budget, group in frame.groupby("budget"):
        epochs = group["epochs_seen"].astype(float)
        rows.append({"budget": int(budget), "runs": len(group), "epochs seen (min)": float(epochs.min()),
                     "epochs seen (max)": float(epochs.max()),
                     **{f"stopped: {k}": int(v) for k, v in group["stop_reason"].value_counts().items()},
                     # a flag, not a reason: a run stopped on patience may still have improved at its last round
                     "of which improving at the last round": int(group["still_improving"].astype(bool).sum())})
    table = pd.DataFrame(rows)
    reasons = [c for c in table.columns if c.startswith("stopped: ")]
    table[reasons] = table[reasons].fillna(0).astype(int)  # a reason no run at a budget had: 0 runs, a count
    return table


def calibration(results: pd.DataFrame) -> pd.DataFrame:
    """Expected calibration error at the largest budget, mean and sd over seeds per method."""
    if "ece" not in results:
        return pd.DataFrame()
    largest = int(results["budget"].max())
    return results[results["budget"] == largest].groupby("method", observed=True)["ece"].agg(["mean", "std"]) \
        .reset_index()


def shift_summary(drops: pd.DataFrame) -> pd.DataFrame:
    """Mean drop (points) per method × budget × shift family."""
    if drops.empty:
        return drops
    mean = drops.groupby(["budget", "shift", "method"])["drop_points"].mean().unstack("method")
    return mean.reset_index().rename_axis(columns=None)  # no "method" name cell over the index columns


GUIDE_COLUMNS = ("budget", "pick", "pick_mean", "pick_seeds", "pick_gain_over_probe_points", "tied",
                 "expected_loss_points", "best", "runner_up", "detectable_points", "pick_build_seconds",
                 "pick_train_flops", "pick_serve_seconds_per_1000", "pick_infer_flops_per_row")


def guide_table(guide: pd.DataFrame) -> pd.DataFrame:
    """The decision guide as a reader reads it: the pick (made on the selection rows) and its test score, the
    methods tied with the best, its expected loss, the power of the run and the pick's costs (every method's
    P(best), selection and test scores and costs stay in decision.csv)."""
    cols = [c for c in ("task", *GUIDE_COLUMNS) if c in guide]
    return readable(guide[cols], missing="—")


ANSWER_FLAG_NOTE = ("† On test this pick scores more than the decision margin below the method that scores best "
                    "there: the selection rows, carved from the training split, rank it higher than the test split "
                    "does. The task's compare page gives each method's selection − test gap.")


def pick_shortfall_points(row: pd.Series) -> float:
    """How far the pick's test mean falls below the best test mean at its budget, in points (0 where the pick
    is best on test), from one decision.csv row's ``test <method>`` columns; NaN where the row has none."""
    test = {str(c).removeprefix("test "): float(row[c]) for c in row.index
            if str(c).startswith("test ") and pd.notna(row[c])}
    if not test:
        return math.nan
    pick = test[str(row["pick"])] if str(row["pick"]) in test else float(row.get("pick_mean", math.nan))
    return 100 * (max(test.values()) - pick)


def pick_flagged(row: pd.Series) -> bool:
    """The pick scores more than the decision margin below the best on test (the † of the answer)."""
    shortfall, margin = pick_shortfall_points(row), float(row.get("margin_points", math.nan))
    return bool(shortfall > margin)  # NaN (no test columns or no margin): not flagged


def answer_note(answer: pd.DataFrame) -> str:
    """The footnote of the answer table where a pick carries its flag (†), else "": which answers, per task."""
    flagged = answer[answer["pick"].astype(str).str.endswith(" †")] if len(answer) else answer
    if not len(flagged):
        return ""
    per_task = "; ".join(f"{task} {len(g)} of {int((answer['task'] == task).sum())} budgets ({', '.join(g['labels'])})"
                         for task, g in flagged.groupby("task", sort=False))
    return f"{ANSWER_FLAG_NOTE} Flagged: {per_task}."


def answer_table(per_task: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The answer at a glance, one row per task × budget: what to pick (decided on the selection rows) and what
    it ties with, its test score, its gain over the probe with the interval the pages show, and its cost
    relative to the probe (build: decision.csv's build seconds, which hold the embedding pass and the LR search's
    share; serve seconds and FLOPs: medians of the result rows); a pick more than the margin below the best test
    score is flagged † (`answer_note`). Read from decision.csv, the comparisons and the result rows."""
    rows = []
    for task, t in per_task.items():
        guide = t["guide"]
        if guide.empty:  # no decision yet for this task: nothing to show
            continue
        results, comparisons = t["results"], t["comparisons"]
        metric = t["headline"]["metric"]
        med = results.assign(method=results["method"].astype(str)).groupby(["method", "budget"]).median(
            numeric_only=True)
        for _, r in guide.iterrows():
            pick, budget = str(r["pick"]), int(r["budget"])
            gain = "—"
            if pick != "probe":
                row = vs_probe(comparisons, pick, budget)
                if row is not None:
                    gain = gain_text(row)

            def ratio(column: str, pick: str = pick, budget: int = budget, med: pd.DataFrame = med) -> str:
                try:
                    value = float(med.loc[(pick, budget), column]) / float(med.loc[("probe", budget), column])
                except (KeyError, ZeroDivisionError):
                    return "—"
                return ratio_text(value) if math.isfinite(value) else "—"

            # seeds that share one deterministic fit (the frozen methods at all labels) count once
            fits = "1 fit" if int(r["pick_seeds"]) == 1 else f"{int(r['pick_seeds'])} seeds"
            flag = " †" if pick_flagged(r) else ""  # explained under the table (answer_note)
            build = float(r.get(f"build_s {pick}", math.nan)) / float(r.get("build_s probe", math.nan))
            rows.append({"task": task, "labels": count_text(budget), "pick": pick + flag,
                         "tied with the best": str(r.get("tied", "")), "metric": metric,
                         "test score": f"{r['pick_mean']:.3f} ({fits})",
                         "gain over probe (points)": gain,
                         "build × probe (s)": ratio_text(build) if math.isfinite(build) else "—",
                         "serve × probe (s)": ratio("infer_ms_per_1000"),
                         "build × probe (FLOPs)": ratio("train_flops"),
                         "serve × probe (FLOPs)": ratio("infer_flops_per_row")})
    return pd.DataFrame(rows)


def seeds_sentence(per_task: dict[str, dict[str, Any]]) -> str:
    """How many seeds the committed run holds per budget: the tuned methods' and the frozen methods' distinct
    fits (a fit shared by seeds counts once), as a range where tasks or methods differ; each task's largest
    budget is its whole train split ("all")."""
    counts: dict[str, dict[float, set[int]]] = {"tuned": {}, "frozen": {}}
    for t in per_task.values():
        if not {"method", "budget", "seed"} <= set(t["results"].columns):
            continue
        fits = distinct_fits(t["results"])
        largest = int(fits["budget"].max())
        per = fits.assign(method=fits["method"].astype(str)).groupby(["method", "budget"])["seed"].nunique()
        for (method, budget), n in per.items():
            slot = float("inf") if int(budget) == largest else float(budget)
            counts["tuned" if method in TUNED_METHODS else "frozen"].setdefault(slot, set()).add(int(n))

    def listing(by_budget: dict[float, set[int]]) -> str:
        def seeds(ns: set[int]) -> str:
            return str(min(ns)) if len(ns) == 1 else f"{min(ns)}–{max(ns)}"
        return ", ".join(f"{'all' if b == float('inf') else count_text(b)} labels {seeds(ns)}"
                         for b, ns in sorted(by_budget.items()))

    parts = [f"tuned methods: {listing(counts['tuned'])}" if counts["tuned"] else "no tuned method ran",
             f"probe, layer probe and classic: {listing(counts['frozen'])}" if counts["frozen"] else ""]
    return ("Seeds per label budget in the committed run (per task and method; at all labels the frozen "
            "methods' fit is deterministic and counts once): " + "; ".join(p for p in parts if p) + ".")
