"""Metrics through the `evaluate` API, with metric modules that ship in this package (loaded by path).

Single-label: accuracy, macro-F1, balanced accuracy (one `evaluate.combine`), AUROC (binary or macro
one-vs-rest) and expected calibration error from the probabilities. Multi-label: LexGLUE micro/macro
F1 (labels + an extra "none" label) after per-label thresholds chosen on validation.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")  # modules are local; never reach for a hub

MODULES_DIR = Path(__file__).parent / "metric_modules"
SINGLE_LABEL_METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "auroc", "ece")
MULTI_LABEL_METRICS = ("micro_f1", "macro_f1")


@functools.cache
def load_metric(name: str) -> Any:
    """Load one of the shipped metric modules by path (works offline)."""
    import evaluate

    path = MODULES_DIR / name
    if not path.is_dir():
        raise ValueError(f"unknown metric module {name!r}; shipped: {sorted(p.name for p in MODULES_DIR.iterdir())}")
    return evaluate.load(str(path))


@functools.cache
def _label_metrics() -> Any:
    import evaluate

    return evaluate.combine([load_metric("accuracy"), load_metric("macro_f1"), load_metric("balanced_accuracy")])


def single_label_metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """Metrics of class probabilities `probs` (N, C) against labels `y` (N,)."""
    probs = np.asarray(probs, np.float64)
    y = np.asarray(y, np.int64)
    _check_finite(probs)
    preds = probs.argmax(1)
    out: dict[str, Any] = dict(_label_metrics().compute(predictions=preds.tolist(), references=y.tolist()))
    auroc = load_metric("auroc").compute(prediction_scores=probs.tolist(), references=y.tolist())
    out["auroc"] = auroc["auroc"]
    if auroc["auroc_skipped_classes"]:
        out["auroc_skipped_classes"] = auroc["auroc_skipped_classes"]  # absent from y: reported, not NaN
    out["ece"] = load_metric("ece").compute(prediction_scores=probs.tolist(), references=y.tolist())["ece"]
    return out


def multi_label_metrics(probs: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """LexGLUE micro/macro F1 of sigmoid `probs` (N, L) thresholded per label against multi-hot `y`."""
    probs = np.asarray(probs, np.float64)
    _check_finite(probs)
    preds = (probs >= np.asarray(thresholds)[None, :]).astype(np.int64)
    return dict(load_metric("lexglue_f1").compute(predictions=preds.tolist(), references=np.asarray(y).tolist()))


def compute_metrics(probs: np.ndarray, y: np.ndarray, *, thresholds: np.ndarray | None = None) -> dict[str, Any]:
    """Dispatch on label shape: (N,) single-label, (N, L) multi-label (needs `thresholds`)."""
    if np.asarray(y).ndim == 2:
        if thresholds is None:
            raise ValueError("multi-label metrics need thresholds; choose them on validation first")
        return multi_label_metrics(probs, y, thresholds)
    return single_label_metrics(probs, y)


def choose_thresholds(probs: np.ndarray, y: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-label decision thresholds that maximise each label's F1 on validation (ties: 0.5 nearest)."""
    grid = np.linspace(0.05, 0.95, 19) if grid is None else grid
    probs = np.asarray(probs)
    y = np.asarray(y).astype(bool)
    thresholds = np.full(probs.shape[1], 0.5)
    for j in range(probs.shape[1]):
        best, best_t = -1.0, 0.5
        for t in sorted(grid, key=lambda g: abs(g - 0.5)):
            pred = probs[:, j] >= t
            tp = np.sum(pred & y[:, j])
            denom = pred.sum() + y[:, j].sum()
            f1 = 2 * tp / denom if denom else 0.0
            if f1 > best:
                best, best_t = f1, t
        thresholds[j] = best_t
    return thresholds


def _check_finite(probs: np.ndarray) -> None:
    if not np.isfinite(probs).all():
        raise FloatingPointError("non-finite probabilities reached the metrics; the model diverged "
                                 "(lower the learning rate or enable gradient clipping)")


# ------------------------------------------------------------------------- fast main metric, selection


def _auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    n_pos = positives.sum()
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(scores, method="average")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fast_metric(name: str, probs: np.ndarray, y: np.ndarray, thresholds: np.ndarray | None = None) -> float:
    """The main metric alone, in NumPy: accuracy, macro_f1, balanced_accuracy, auroc (single-label) or
    micro_f1/macro_f1 (multi-label, LexGLUE's extra "none" label). Same values as the shipped `evaluate`
    modules (tested); used where one number is needed many times: model selection and the bootstrap."""
    if y.ndim == 2:
        pred = (probs >= thresholds[None, :]).astype(np.int64)
        pred = np.concatenate([pred, (pred.sum(1) == 0)[:, None]], 1)
        ref = np.concatenate([y, (y.sum(1) == 0)[:, None]], 1).astype(np.int64)
        tp = (pred & ref).sum(0)
        fp = (pred & (1 - ref)).sum(0)
        fn = ((1 - pred) & ref).sum(0)
        if name == "micro_f1":
            denom = 2 * tp.sum() + fp.sum() + fn.sum()
            return float(2 * tp.sum() / denom) if denom else 0.0
        denom = 2 * tp + fp + fn
        return float(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0).mean())
    pred = probs.argmax(1)
    if name == "accuracy":
        return float((pred == y).mean())
    if name == "balanced_accuracy":
        return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))
    if name == "macro_f1":
        scores = []
        for c in np.union1d(pred, y):
            denom = (pred == c).sum() + (y == c).sum()
            scores.append(2 * ((pred == c) & (y == c)).sum() / denom if denom else 0.0)
        return float(np.mean(scores))
    if name == "auroc":
        if probs.shape[1] == 2:
            return _auroc(probs[:, 1], y == 1)
        values = [_auroc(probs[:, c], y == c) for c in range(probs.shape[1])]
        return float(np.nanmean(values))
    raise ValueError(f"unknown metric {name!r}")


def selection_score(probs: np.ndarray, y: np.ndarray, main_metric: str) -> tuple[float, np.ndarray | None]:
    """Validation score used for model selection, and the multi-label thresholds chosen on the same split.

    Multi-label: per-label thresholds that maximise F1 on these probabilities first, then the metric at
    them. An undefined score (e.g. AUROC with one class present) becomes -inf, so it is never selected.
    """
    probs = np.asarray(probs, np.float64)
    _check_finite(probs)
    thresholds = choose_thresholds(probs, y) if np.asarray(y).ndim == 2 else None
    score = fast_metric(main_metric, probs, np.asarray(y), thresholds)
    return (-np.inf if math.isnan(score) else score), thresholds


def bootstrap_se(probs: np.ndarray, y: np.ndarray, main_metric: str, thresholds: np.ndarray | None = None, *,
                 n_boot: int = 200, seed: int = 0) -> float:
    """Standard error of the main metric over `n_boot` resamples of the rows (fixed thresholds; a seeded
    generator, so the same inputs give the same value): the noise a selection-score gain must exceed."""
    probs, y = np.asarray(probs, np.float64), np.asarray(y)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(y), len(y))
        value = fast_metric(main_metric, probs[rows], y[rows], thresholds)
        if not math.isnan(value):
            scores.append(value)
    return float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0
