"""Robustness: the shift sets' scores beside the clean test split, each run's drop under shift, and each
method's drop against the probe's (paired by seed and shift set). The compare stage writes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .compare import load_predictions
from .metrics import fast_metric
from .registry import MAIN_METRICS
from .tables import distinct_fits


def load_shift(results_dir: Path) -> pd.DataFrame:
    """Every method's shift scores (results/<task>/shift/<method>.csv), each graded row (a perturbation or
    corruption of test rows) with ``clean_rows_<metric>``: the same run's metric on exactly those clean
    test rows, from its stored test predictions, so that the drop is paired row for row."""
    results_dir = Path(results_dir)
    files = sorted((results_dir / "shift").glob("*.csv"))
    frames = [pd.read_csv(f) for f in files if f.stat().st_size > 1]
    if not frames:
        return pd.DataFrame()
    shift = pd.concat(frames, ignore_index=True)
    return _with_clean_rows(shift, results_dir)


def write_shift_table(results_dir: Path) -> Path:
    """results/<task>/shift.csv: every method's shift rows in one table (method, seed, budget, set, shift,
    severity, rows, the task's metrics, and for graded sets the same metrics on the same clean rows)."""
    from .io import write_csv

    path = Path(results_dir) / "shift.csv"
    write_csv(path, load_shift(results_dir))
    return path


def _shift_base_rows(results_dir: Path, y_test: np.ndarray, n_rows: int) -> np.ndarray | None:
    """Indices of the test rows the graded shift sets were built from, as the shift stage recorded them
    (``test_rows`` in data/shift/<task>/sets.json), checked against the labels stored with the set; None when
    no graded set of `n_rows` rows records them or they do not match."""
    import json

    task_dir = results_dir.parents[1] / "data" / "shift" / results_dir.name
    index = task_dir / "sets.json"
    if not index.is_file():
        return None
    entries = [e for e in json.loads(index.read_text())["sets"]
               if e["severity"] > 0 and e.get("test_rows") is not None and e["rows"] == n_rows]
    if not entries:
        return None
    path = task_dir / entries[0]["file"]
    if path.suffix == ".json":
        stored = np.asarray(json.loads(path.read_text())["y"])
    else:
        with np.load(path) as npz:
            stored = npz["y"]
    rows = np.asarray(entries[0]["test_rows"], np.int64)
    return rows if len(rows) == len(stored) and np.array_equal(y_test[rows], stored) else None


def _with_clean_rows(shift: pd.DataFrame, results_dir: Path) -> pd.DataFrame:
    graded = shift["severity"] > 0
    if not graded.any():
        return shift
    metrics = [c for c in MAIN_METRICS if c in shift]
    shift = shift.copy()
    for col in metrics:
        shift[f"clean_rows_{col}"] = np.nan
    cache: dict[str, dict[str, np.ndarray]] = {}
    for (method, n_rows), group in shift[graded].groupby(["method", "rows"]):
        path = results_dir / "preds" / f"{method}.npz"
        if not path.is_file():
            continue
        preds = cache.setdefault(method, load_predictions(results_dir, method))
        y = preds["y_test"]
        rows = _shift_base_rows(results_dir, y, int(n_rows))
        if rows is None:
            continue
        for (seed, budget), runs in group.groupby(["seed", "budget"]):
            key = f"s{seed}_b{budget}"
            if key not in preds:
                continue
            thr = preds.get(f"thr_{key}")
            for col in metrics:
                shift.loc[runs.index, f"clean_rows_{col}"] = fast_metric(col, preds[key][rows], y[rows], thr)
    return shift


def shift_drops(results: pd.DataFrame, shift: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per run and shift set: clean metric, shifted metric and the drop (clean − shifted, points). Graded
    sets compare with the same clean rows (`load_shift`); new sources with the whole clean test split. Seeds that
    share one deterministic fit count once (`tables.distinct_fits`)."""
    if shift.empty:
        return pd.DataFrame()
    # a deterministic fit shared by seeds (frozen methods at all labels) is one run, not ten paired seeds
    clean = distinct_fits(results)[["method", "seed", "budget", metric]].rename(columns={metric: "clean"})
    clean["method"] = clean["method"].astype(str)
    merged = shift.merge(clean, on=["method", "seed", "budget"], how="inner")
    paired = f"clean_rows_{metric}"
    if paired in merged:
        merged["clean"] = merged[paired].where(merged[paired].notna(), merged["clean"])
    merged = merged.rename(columns={metric: "shifted"})
    merged["drop_points"] = 100 * (merged["clean"] - merged["shifted"])
    return merged[["method", "seed", "budget", "set", "shift", "severity", "rows", "clean", "shifted", "drop_points"]]


def drop_differences(drops: pd.DataFrame, *, reference: str = "probe") -> pd.DataFrame:
    """Paired difference of drops (method − reference) per budget and shift family: mean over the family's
    sets per seed, then a t-interval over seeds (a single seed gets the sets' spread instead, stated in
    `basis`). Positive = the method loses more under shift than the reference."""
    from scipy import stats

    if drops.empty:
        return pd.DataFrame()
    per_seed = drops.groupby(["method", "budget", "shift", "seed"])["drop_points"].mean().reset_index()
    ref = per_seed[per_seed["method"] == reference].rename(columns={"drop_points": "ref"}).drop(columns="method")
    paired = per_seed[per_seed["method"] != reference].merge(ref, on=["budget", "shift", "seed"])
    paired["diff"] = paired["drop_points"] - paired["ref"]
    rows = []
    for (method, budget, family), group in paired.groupby(["method", "budget", "shift"]):
        values = group["diff"].to_numpy()
        basis = "seeds"
        if len(values) < 2:
            sets = drops[(drops["method"] == method) & (drops["budget"] == budget) & (drops["shift"] == family)]
            refs = drops[(drops["method"] == reference) & (drops["budget"] == budget) & (drops["shift"] == family)]
            both = sets.merge(refs, on=["seed", "set"], suffixes=("", "_ref"))
            values = (both["drop_points"] - both["drop_points_ref"]).to_numpy()
            basis = "sets (one seed)"
        mean = float(np.mean(values))
        spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        if spread > 1e-12:
            half = float(stats.t.ppf(0.975, len(values) - 1) * spread / np.sqrt(len(values)))
        else:  # one value, or identical ones (one deterministic fit, sets that agree): no interval, no claim
            half, basis = float("nan"), f"{basis}: no spread, no interval"
        rows.append({"method": method, "reference": reference, "budget": int(budget), "shift": family,
                     "diff_drop_points": mean, "ci_low": mean - half, "ci_high": mean + half, "n": len(values),
                     "basis": basis, "significant": bool(np.isfinite(half) and abs(mean) > half)})
    return pd.DataFrame(rows)
