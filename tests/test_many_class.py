"""Many-class tasks: every method returns one probability column per task label, whatever its budget holds.

A generated 50-class problem whose train split lacks 6 of the labels (they occur only in validation and
test, as rare provisions do in a real many-class table) is fitted by the probe and the classic floor and
checked against scikit-learn references whose columns are mapped to label ids by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedtune.probe import fit_classic, fit_probe

N_CLASSES = 50
ABSENT = np.arange(44, 50)  # labels with no train row


def many_class_features(n: int, *, seed: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters in 24 dimensions, one centre per class (fixed across calls)."""
    centres = np.random.default_rng(1234).normal(0, 3.0, (N_CLASSES, 24))
    rng = np.random.default_rng(seed)
    y = rng.choice(labels, n)
    return centres[y] + rng.normal(0, 1.0, (n, 24)), y


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    present = np.setdiff1d(np.arange(N_CLASSES), ABSENT)
    return {"train": many_class_features(300, seed=0, labels=present),
            "val": many_class_features(200, seed=1, labels=np.arange(N_CLASSES)),
            "test": many_class_features(400, seed=2, labels=np.arange(N_CLASSES))}


def test_probe_has_a_column_per_label_and_matches_scikit_learn(splits) -> None:
    from sklearn.linear_model import LogisticRegression

    (xt, yt), (xv, yv), (xs, ys) = splits["train"], splits["val"], splits["test"]
    model, info = fit_probe(xt, yt, xv, yv, c_grid=(0.01, 0.1, 1.0), main_metric="accuracy", n_outputs=N_CLASSES)
    probs = model.predict_proba(xs)
    assert probs.shape == (len(ys), N_CLASSES)
    assert probs[:, ABSENT].max() < 1e-9  # never seen in training: no probability mass
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    # the reference: scikit-learn's multinomial fit at the chosen C on the same standardised rows,
    # its columns (classes_, the labels present) placed at their label ids
    mean, std = xt.mean(0), xt.std(0)
    ref = LogisticRegression(C=info["c"], tol=1e-10, max_iter=20000).fit((xt - mean) / std, yt)
    expected = np.zeros_like(probs)
    expected[:, ref.classes_] = ref.predict_proba((xs - mean) / std)
    np.testing.assert_allclose(probs, expected, atol=2e-3)
    assert (probs.argmax(1) == ys).mean() > 0.5  # chance is 0.02


def test_classic_columns_follow_label_ids_not_the_classes_present(splits) -> None:
    from sklearn.linear_model import LogisticRegression

    (xt, yt), (xv, yv), (xs, ys) = splits["train"], splits["val"], splits["test"]
    model, info = fit_classic(xt, yt, xv, yv, c_grid=(0.1, 1.0), main_metric="accuracy", seed=0,
                              n_outputs=N_CLASSES)
    probs = model.predict_proba(xs)
    assert probs.shape == (len(ys), N_CLASSES) and np.all(probs[:, ABSENT] == 0)
    ref = LogisticRegression(C=info["c"], max_iter=1000, random_state=0).fit(xt, yt)
    np.testing.assert_array_equal(probs.argmax(1), ref.classes_[ref.predict_proba(xs).argmax(1)])
    assert (probs.argmax(1) == ys).mean() > 0.5


def test_probe_head_for_lp_ft_is_finite_with_absent_classes(splits) -> None:
    (xt, yt), (xv, yv) = splits["train"], splits["val"]
    model, _ = fit_probe(xt[:60], yt[:60], xv, yv, c_grid=(0.1, 1.0), main_metric="accuracy", n_outputs=N_CLASSES)
    weight, bias = model.raw_head()
    assert weight.shape == (N_CLASSES, xt.shape[1]) and np.isfinite(weight).all() and np.isfinite(bias).all()
