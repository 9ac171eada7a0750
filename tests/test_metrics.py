"""Each shipped `evaluate` module against scikit-learn (or a reference loop) on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from embedtune.metrics import choose_thresholds, compute_metrics, fast_metric, load_metric


def _probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    logits = rng.normal(size=(n, k))
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


@pytest.mark.parametrize("k", [2, 4])
def test_single_label_modules_match_sklearn(k: int) -> None:
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 300)
    probs = _probs(rng, 300, k)
    pred = probs.argmax(1)
    out = compute_metrics(probs, y)
    assert out["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert out["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    expected_auc = roc_auc_score(y, probs[:, 1]) if k == 2 else roc_auc_score(y, probs, multi_class="ovr")
    assert out["auroc"] == pytest.approx(expected_auc)


def test_auroc_handles_ties_like_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)  # many ties
    out = load_metric("auroc").compute(prediction_scores=np.stack([1 - scores, scores], 1).tolist(), references=y.tolist())
    assert out["auroc"] == pytest.approx(roc_auc_score(y, scores))


def test_ece_matches_reference_loop() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 500)
    probs = _probs(rng, 500, 3)
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, 16)
    expected = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            expected += mask.mean() * abs((pred[mask] == y[mask]).mean() - conf[mask].mean())
    assert compute_metrics(probs, y)["ece"] == pytest.approx(expected)
    perfect = np.eye(3)[y]
    assert compute_metrics(perfect, y)["ece"] == pytest.approx(0.0)


def test_lexglue_f1_matches_sklearn_with_none_label() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((400, 8)) < 0.05).astype(int)
    probs = rng.random((400, 8))
    thresholds = np.full(8, 0.9)
    pred = (probs >= 0.9).astype(int)
    y_n = np.concatenate([y, (y.sum(1) == 0)[:, None]], 1)
    p_n = np.concatenate([pred, (pred.sum(1) == 0)[:, None]], 1)
    out = compute_metrics(probs, y, thresholds=thresholds)
    assert out["micro_f1"] == pytest.approx(f1_score(y_n, p_n, average="micro", zero_division=0))
    assert out["macro_f1"] == pytest.approx(f1_score(y_n, p_n, average="macro", zero_division=0))


def test_fast_bootstrap_metrics_agree_with_modules() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 250)
    probs = _probs(rng, 250, 2)
    out = compute_metrics(probs, y)
    for name in ("accuracy", "macro_f1", "balanced_accuracy", "auroc"):
        assert fast_metric(name, probs, y) == pytest.approx(out[name])
    ym = (rng.random((250, 5)) < 0.1).astype(np.int64)
    pm = rng.random((250, 5))
    t = choose_thresholds(pm, ym)
    out = compute_metrics(pm, ym, thresholds=t)
    assert fast_metric("macro_f1", pm, ym, t) == pytest.approx(out["macro_f1"])
    assert fast_metric("micro_f1", pm, ym, t) == pytest.approx(out["micro_f1"])


def test_class_absent_from_test_split_is_reported_not_nan() -> None:
    rng = np.random.default_rng(5)
    probs = _probs(rng, 100, 3)
    y = rng.integers(0, 2, 100)  # class 2 never appears
    out = compute_metrics(probs, y)
    assert out["auroc_skipped_classes"] == [2]
    assert np.isfinite(out["auroc"]) and np.isfinite(out["macro_f1"])


def test_non_finite_probabilities_are_refused() -> None:
    with pytest.raises(FloatingPointError, match="non-finite probabilities"):
        compute_metrics(np.array([[np.nan, 1.0]]), np.array([0]))
