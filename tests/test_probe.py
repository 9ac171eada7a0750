"""Probe protocol: beats chance, same objective as scikit-learn, deterministic, head mapping exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from embedtune.probe import fit_logreg, fit_probe


def _blobs(n: int, d: int = 20, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(k, d))
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_probe_beats_chance_on_separable_toy_set() -> None:
    x, y = _blobs(600)
    model, info = fit_probe(x[:200], y[:200], x[200:400], y[200:400], c_grid=(0.01, 0.1, 1.0), main_metric="accuracy",
                            n_outputs=3)
    accuracy = (model.predict_proba(x[400:]).argmax(1) == y[400:]).mean()
    assert accuracy > 0.9  # chance is 1/3
    assert info["c"] in (0.01, 0.1, 1.0) and len(info["c_path"]) == 3


def test_same_objective_as_sklearn_multinomial() -> None:
    x, y = _blobs(300, k=3, seed=1)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float64)
    w, b, *_ = fit_logreg(x, y, c=0.5, multi_label=False, n_outputs=3, max_iter=500, tol=1e-8)
    ours = torch.softmax(torch.from_numpy(x @ w.T + b), 1).numpy()
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(x, y).predict_proba(x)
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("k", [2, 3])
def test_lbfgs_fallback_reaches_the_same_optimum(monkeypatch, k) -> None:
    """Large problems go to L-BFGS instead of Newton: same objective, same solution."""
    import embedtune.probe as probe

    x, y = _blobs(300, k=k, seed=7)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float64)
    newton = fit_logreg(x, y, c=0.5, multi_label=False, n_outputs=k, tol=1e-8)
    monkeypatch.setattr(probe, "NEWTON_MAX_UNKNOWNS", 1)
    lbfgs = fit_logreg(x, y, c=0.5, multi_label=False, n_outputs=k, max_iter=2000, tol=1e-8, lbfgs_tol=1e-8)
    assert np.abs(newton.weight - lbfgs.weight).max() < 1e-4


def test_multilabel_objective_matches_per_label_sklearn() -> None:
    """One-vs-rest sigmoids: each label's column is scikit-learn's binary logistic regression at the same C."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 8))
    y = np.stack([x[:, 0] + rng.normal(size=300) > 0.5, x[:, 1] - x[:, 2] > 0], 1).astype(np.int8)
    w, b, *_ = fit_logreg(x, y, c=2.0, multi_label=True, n_outputs=2, max_iter=1000, tol=1e-8)
    for j in range(2):
        ref = LogisticRegression(C=2.0, tol=1e-10, max_iter=5000).fit(x, y[:, j])
        assert np.allclose(w[j], ref.coef_[0], atol=1e-3) and abs(b[j] - ref.intercept_[0]) < 1e-3


def test_warm_started_path_reaches_the_cold_optimum() -> None:
    """Keeping the path's solution at the chosen C is sound: warm and cold starts reach the same optimum."""
    x, y = _blobs(200, k=3, seed=6)
    x = (x - x.mean(0)) / x.std(0)
    warm = None
    for c in (0.01, 0.1, 1.0):
        warm = fit_logreg(x, y, c=c, multi_label=False, n_outputs=3, init=None if warm is None else warm[:2])
    cold = fit_logreg(x, y, c=1.0, multi_label=False, n_outputs=3)
    assert np.abs(warm.weight - cold.weight).max() < 1e-3 and cold.evals > warm.evals  # same weights, warm start is cheaper


def test_probe_is_deterministic() -> None:
    x, y = _blobs(300, seed=2)
    a, _ = fit_probe(x[:100], y[:100], x[100:], y[100:], c_grid=(0.1, 1.0), main_metric="macro_f1", n_outputs=3)
    b, _ = fit_probe(x[:100], y[:100], x[100:], y[100:], c_grid=(0.1, 1.0), main_metric="macro_f1", n_outputs=3)
    assert np.array_equal(a.weight, b.weight)


def test_raw_head_reproduces_standardised_logits() -> None:
    x, y = _blobs(200, seed=3)
    model, _ = fit_probe(x[:100], y[:100], x[100:], y[100:], c_grid=(1.0,), main_metric="accuracy", n_outputs=3)
    w, b = model.raw_head()
    assert np.allclose(x @ w.T + b, model.logits(x), atol=1e-4)


def test_multilabel_probe_chooses_thresholds() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 10)).astype(np.float32)
    y = np.stack([x[:, 0] > 1.0, x[:, 1] > 0.5], 1).astype(np.int8)
    model, info = fit_probe(x[:200], y[:200], x[200:], y[200:], c_grid=(1.0, 10.0), main_metric="macro_f1", n_outputs=2)
    assert len(info["thresholds"]) == 2
    assert info["val_score"] > 0.8


@pytest.mark.parametrize("kind", ["text", "image"])
def test_classic_floor_learns(kind: str) -> None:
    from embedtune.probe import classic_features, fit_classic

    from .conftest import make_images, make_text_rows

    if kind == "text":
        frame = make_text_rows(200)
        x, y = frame["text"].tolist(), (frame["label"] == "pos").to_numpy(np.int64)
        train, val = x[:100], x[100:]
    else:
        x, y = make_images(200)
        train, val = x[:100], x[100:]
    xt, (xv,), _ = classic_features(train, [val], kind=kind)
    model, info = fit_classic(xt, y[:100], xv, y[100:], c_grid=(0.1, 1.0, 10.0), main_metric="accuracy", seed=0)
    assert info["val_score"] > 0.85


def test_seeds_that_share_one_deterministic_fit_count_once_in_the_method_table() -> None:
    import pandas as pd

    from embedtune.stages.probe import reseeded
    from embedtune.tables import method_summary

    record = {"seed": 0, "budget": 100, "rows": {"probe": {"method": "probe", "seed": 0, "budget": 100,
                                                           "accuracy": 0.8}},
              "shift_rows": [{"method": "probe", "seed": 0, "set": "a"}], "mass": [{"seed": 0, "block": 0}]}
    copy = reseeded(record, 3)
    assert copy["seed"] == 3 and copy["rows"]["probe"]["seed"] == 3 and copy["rows"]["probe"]["fit_seed"] == 0
    assert copy["shift_rows"][0]["seed"] == 3 and copy["mass"][0]["fit_seed"] == 0
    assert reseeded(copy, 5)["rows"]["probe"]["fit_seed"] == 0  # a copy of a copy still names the fit
    probe = pd.DataFrame([reseeded(record, s)["rows"]["probe"] for s in range(3)])
    tuned = pd.DataFrame([{"method": "full", "seed": s, "budget": 100, "accuracy": 0.7 + s / 100} for s in range(3)])
    table = method_summary(pd.concat([probe, tuned], ignore_index=True)).set_index("method")
    assert table.loc["probe", "seeds"] == 1 and table.loc["probe", "accuracy"] == "0.800"  # one fit, no "± 0"
    assert table.loc["full", "seeds"] == 3 and "±" in table.loc["full", "accuracy"]


def test_a_stored_probe_fit_takes_the_backbones_current_flops_count() -> None:
    from embedtune.stages.probe import with_backbone_flops

    row = {"budget": 64, "n_val": 100, "trainable_params": 770, "infer_flops_per_row": 1000.0 + 2 * 770,
           "train_flops": 5.0 + 1000.0 * 164}
    record = {"rows": {"probe": row, "layer_probe": dict(row), "classic": {"budget": 64}}}
    fixed = with_backbone_flops(record, 1200.0)["rows"]
    assert fixed["probe"]["infer_flops_per_row"] == 1200.0 + 2 * 770
    assert fixed["probe"]["train_flops"] == 5.0 + 1200.0 * 164  # head fit + backbone over the rows embedded
    assert fixed["layer_probe"] == fixed["probe"] and fixed["classic"] == {"budget": 64}
    assert with_backbone_flops(record, 1000.0)["rows"]["probe"] == row  # the same count changes nothing
