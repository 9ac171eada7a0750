"""What every training stage writes per method, and the rules its rows follow (pure: NumPy and pandas).

``results/<task>/<method>.csv`` (one row per run), ``results/<task>/preds/<method>.npz`` (float64 test
probabilities per run: no ties from rounding), ``metrics/<task>/methods/<method>.json`` (mean, sd and n over
seeds of every numeric column: metrics, seconds, FLOPs — so it changes whenever a number of the CSV does,
which is what lets the compare stage depend on the folder instead of a hand-kept list of methods).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .io import write_csv, write_json, write_npz
from .paths import TaskPaths


def aggregate(frame: pd.DataFrame, columns: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and standard deviation over seeds per budget: ``{budget: {metric: {mean, std, n}}}``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for budget, group in frame.groupby("budget"):
        out[str(budget)] = {}
        for col in columns:
            if col in group and pd.api.types.is_numeric_dtype(group[col]):
                values = group[col].dropna()
                out[str(budget)][col] = {"mean": float(values.mean()) if len(values) else float("nan"),
                                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                                         "n": int(len(values))}
    return out


def write_method_outputs(paths: TaskPaths, method: str, rows: list[dict[str, Any]],
                         preds: dict[str, np.ndarray], *, y_test: np.ndarray,
                         summary_columns: tuple[str, ...], y_val: np.ndarray | None = None) -> pd.DataFrame:
    """The method's results CSV, its predictions (test, and the selection rows' as ``val_<run>`` with
    ``y_val``) and its metrics JSON (module docstring)."""
    frame = pd.DataFrame(rows).sort_values(["budget", "seed"]).reset_index(drop=True)
    labels = {"y_test": y_test} if y_val is None else {"y_test": y_test, "y_val": y_val}
    write_npz(paths.preds(method), **labels, **{k: np.asarray(v, np.float64) for k, v in preds.items()})
    write_csv(paths.results / f"{method}.csv", frame)
    numeric = tuple(c for c in frame.columns if c not in ("seed", "budget") and
                    pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]))
    write_json(paths.metrics / "methods" / f"{method}.json",
               aggregate(frame, tuple(dict.fromkeys((*summary_columns, *numeric)))))
    return frame


def shift_row(*, task: str, method: str, seed: int, budget: int, shift_set: Any, metrics: dict[str, Any],
              names: tuple[str, ...]) -> dict[str, Any]:
    """One run's scores on one shift set (`shift.ShiftSet`)."""
    return {"task": task, "method": method, "seed": seed, "budget": budget, "set": shift_set.name,
            "shift": shift_set.shift, "severity": shift_set.severity, "rows": len(shift_set.y),
            **{k: v for k, v in metrics.items() if k in names}}


def learned(history: list[dict[str, float]], ratio: float, *, start_score: float | None = None,
            best_score: float | None = None) -> bool:
    """The one "did it learn" rule. A run learned when (1) its training loss at the last evaluation is below
    `ratio` × its first round's (``finetune.restart_loss_ratio``) — a run that never gets there sat at its
    initial loss: an unstable learning rate (Mosbach et al., 2021) — and (2) its kept selection score is not
    below the model it started from (`start_score`, scored before the first step; a tie, common on a few
    hundred rows or with a probe head at its ceiling, is not a failure): a rate that wrecks the start in
    its first steps (lp_ft's probe head, a pretrained backbone) can show a falling loss from an already
    diverged first round, and only (2) sees it. Runs record the verdict as ``learned``."""
    losses = [float(h["train_loss"]) for h in history]
    loss_fell = len(losses) < 2 or losses[-1] < ratio * losses[0]
    if start_score is None or best_score is None or not np.isfinite(start_score):
        return loss_fell
    return loss_fell and bool(best_score >= start_score)
