"""Paired-comparison statistics, crossing budgets and the decision guide on constructed inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedtune.compare import Comparison, compare_methods, crossing_budget, paired_interval


def _predictions(y: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    correct = rng.random(len(y)) < accuracy
    pred = np.where(correct, y, 1 - y)
    probs = np.zeros((len(y), 2))
    probs[np.arange(len(y)), pred] = 0.8
    probs[np.arange(len(y)), 1 - pred] = 0.2
    return probs


def test_known_difference_is_found() -> None:
    y = np.random.default_rng(0).integers(0, 2, 2000)
    a = [_predictions(y, 0.85, s) for s in range(3)]
    b = [_predictions(y, 0.75, 10 + s) for s in range(3)]
    diff, low, high, _ = paired_interval(y, a, b, metric="accuracy", n_boot=300)
    assert 0.08 < diff < 0.12 and low > 0.05 and high < 0.15


def test_no_difference_is_not_significant() -> None:
    y = np.random.default_rng(1).integers(0, 2, 1000)
    a = [_predictions(y, 0.8, s) for s in range(3)]
    b = [_predictions(y, 0.8, 20 + s) for s in range(3)]
    diff, low, high, _ = paired_interval(y, a, b, metric="accuracy", n_boot=300)
    assert low < 0 < high


def test_compare_methods_and_crossing_budget() -> None:
    y = np.random.default_rng(2).integers(0, 2, 1500)
    preds = {"full": {"y_test": y}, "probe": {"y_test": y}}
    for budget, (acc_full, acc_probe) in {16: (0.70, 0.80), 64: (0.80, 0.80), 256: (0.90, 0.80), 1024: (0.93, 0.81)}.items():
        for s in range(3):
            preds["full"][f"s{s}_b{budget}"] = _predictions(y, acc_full, 100 * budget + s)
            preds["probe"][f"s{s}_b{budget}"] = _predictions(y, acc_probe, 7 + 100 * budget + s)
    comps = compare_methods(preds, method_a="full", method_b="probe", metric="accuracy", n_boot=200)
    by_budget = {c.budget: c for c in comps}
    assert by_budget[16].significant and by_budget[16].diff < 0
    assert not by_budget[64].significant
    assert crossing_budget(comps) == 256
    assert by_budget[256].verdict().startswith("full beats probe by")
    assert by_budget[64].verdict().startswith("no significant difference")


def test_crossing_budget_none_when_never_better() -> None:
    comps = [Comparison("full", "probe", b, "accuracy", -0.01, -0.03, 0.01, 3) for b in (16, 64)]
    assert crossing_budget(comps) is None


def _simulated_pair(rng: np.random.Generator, *, mu: float, sd_seed: float, n: int = 300, seeds: int = 3):
    y = rng.integers(0, 2, n)
    a, b = [], []
    for _ in range(seeds):
        delta = mu + rng.normal(scale=sd_seed)  # this seed's true difference
        for p, out in ((0.75 + delta / 2, a), (0.75 - delta / 2, b)):
            correct = rng.random(n) < p
            pred = np.where(correct, y, 1 - y)
            out.append(np.eye(2)[pred])
    return y, a, b


def test_interval_coverage_with_three_seeds_is_near_95_percent() -> None:
    from embedtune.compare import paired_interval

    rng = np.random.default_rng(0)
    mu, hits, sims = 0.02, 0, 150
    for _ in range(sims):
        y, a, b = _simulated_pair(rng, mu=mu, sd_seed=0.03)
        _, low, high, _ = paired_interval(y, a, b, metric="accuracy", n_boot=150, seed=int(rng.integers(1 << 30)))
        hits += low <= mu <= high
    assert 0.90 <= hits / sims <= 0.99, hits / sims  # measured: 0.97 (seed sd 0.03), 0.95 (no seed effect)


def test_holm_adjusts_the_family_and_crossing_is_monotone() -> None:
    from embedtune.compare import holm

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    wins = [Comparison("full", "probe", b, "accuracy", 0.05, 0.01, 0.09, 3) for b in (16, 64, 256)]
    assert crossing_budget(wins) == 16
    # a loss at 64 moves the crossing to the budgets above it; a loss at the largest removes it
    mixed = [wins[0], Comparison("full", "probe", 64, "accuracy", 0.0, -0.02, 0.02, 3), wins[2]]
    assert crossing_budget(mixed) == 256
    assert crossing_budget([*wins[:2], Comparison("full", "probe", 256, "accuracy", 0.0, -0.02, 0.02, 3)]) is None


def test_graded_shift_drops_are_paired_with_the_same_clean_rows() -> None:
    from embedtune.robustness import shift_drops

    results = pd.DataFrame([{"method": "probe", "seed": 0, "budget": 64, "accuracy": 0.80}])
    shift = pd.DataFrame([
        {"method": "probe", "seed": 0, "budget": 64, "set": "typos@0.1", "shift": "text_perturb", "severity": 0.1,
         "rows": 120, "accuracy": 0.70, "clean_rows_accuracy": 0.75},
        {"method": "probe", "seed": 0, "budget": 64, "set": "imdb", "shift": "imdb", "severity": 0.0, "rows": 120,
         "accuracy": 0.60, "clean_rows_accuracy": np.nan}])
    drops = shift_drops(results, shift, "accuracy").set_index("set")["drop_points"]
    assert drops["typos@0.1"] == pytest.approx(5.0)  # vs the same 120 clean rows, not the whole test split
    assert drops["imdb"] == pytest.approx(20.0)  # a new source: vs the whole clean test split


def test_a_fit_shared_by_seeds_is_one_run_in_the_shift_comparison() -> None:
    """The frozen methods at all labels fit once (``fit_seed`` 0) and copy that fit to every seed: their drop
    differences rest on one run (the sets' spread), not on ten identical 'seeds' with a zero-width interval."""
    from embedtune.robustness import drop_differences, shift_drops

    results = pd.DataFrame([{"method": m, "seed": s, "budget": 999, "accuracy": 0.80, "fit_seed": 0}
                            for m in ("probe", "classic") for s in range(10)])
    shift = pd.DataFrame([{"method": m, "seed": s, "budget": 999, "set": f"typos@{v}", "shift": "text_perturb",
                           "severity": v, "rows": 120, "accuracy": acc - k * v, "clean_rows_accuracy": 0.80}
                          for m, acc, k in (("probe", 0.78, 1.0), ("classic", 0.75, 1.5)) for s in range(10) for v in (0.1, 0.2)])
    drops = shift_drops(results, shift, "accuracy")
    assert set(drops["seed"]) == {0}
    (row,) = drop_differences(drops).to_dict("records")
    assert row["n"] == 2 and row["basis"] == "sets (one seed)" and row["ci_low"] < row["ci_high"]
    # two sets that differ by exactly the same amount give no spread: no zero-width interval, no significance
    same = shift.assign(accuracy=lambda f: f["accuracy"].where(f["method"] == "probe", f["accuracy"] - 0.03))
    same.loc[same["method"] == "classic", "accuracy"] = same.loc[same["method"] == "probe", "accuracy"].to_numpy() - 0.03
    (flat,) = drop_differences(shift_drops(results, same, "accuracy")).to_dict("records")
    assert np.isnan(flat["ci_low"]) and not flat["significant"] and flat["basis"].endswith("no spread, no interval")


def test_p_value_agrees_with_the_interval() -> None:
    """p < 0.05 exactly when the 95% interval excludes 0 (3 seeds: the seed term uses t with 2 df)."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 600)
    for trial in range(12):
        a = [_predictions(y, 0.80 + 0.01 * (trial % 4), 300 + 10 * trial + s) for s in range(3)]
        b = [_predictions(y, 0.80, 700 + 10 * trial + s) for s in range(3)]
        diff, low, high, p = paired_interval(y, a, b, metric="accuracy", n_boot=200, seed=trial)
        assert (p < 0.05) == (low > 0 or high < 0), (diff, low, high, p)


def test_readable_tables_say_dash_where_a_cell_is_empty_and_keep_the_numbers() -> None:
    import numpy as np
    import pandas as pd

    from embedtune.compare import readable

    frame = pd.DataFrame({"method": ["probe", "full"], "budget": [16, 16], "std": [0.0125, np.nan]})
    shown = readable(frame)
    assert shown.loc[0, "std"] == 0.0125 and shown.loc[1, "std"] == "—"
    assert "NaN" not in shown.to_html() and frame["std"].isna().sum() == 1  # the input is not changed


def test_the_mark_and_the_interval_shown_agree_for_every_comparison_with_the_probe() -> None:
    """Issue 31: "+13.7 [+7.0, +20.5]" once carried no star (Holm over 61 pairs, the interval unadjusted).
    The shown family is the comparisons with the probe; its intervals are simultaneous (Bonferroni over
    that family, wider than 95%), and the mark is exactly "that interval excludes 0"."""
    from embedtune.compare import all_comparisons

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    preds = {}
    for m, acc in (("probe", 0.70), ("lora", 0.73), ("full", 0.80)):
        preds[m] = {"y_test": y}
        for s in range(3):
            for b in (64, 256):
                right = rng.random(400) < acc + (0.02 if b == 256 else 0)
                label = np.where(right, y, 1 - y)
                preds[m][f"s{s}_b{b}"] = np.stack([1 - label, label], 1) * 0.8 + 0.1
    family = all_comparisons(preds, metric="accuracy", n_boot=200)
    shown = [c for key, comps in family.items() if "probe" in key for c in comps]
    assert len(shown) == 4 and all(c.family_size == 4 for c in shown)
    for c in shown:
        assert c.adj_low < c.low and c.adj_high > c.high
        assert c.significant == (c.adj_low > 0 or c.adj_high < 0)
        assert "simultaneous 95% CI" in c.verdict()
    others = [c for key, comps in family.items() if "probe" not in key for c in comps]
    assert others and all(c.family_size is None and c.p_holm is not None for c in others)


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")  # the one-by-one reference, on resample 0
@pytest.mark.parametrize(("metric", "classes"), [("auroc", 2), ("auroc", 4), ("accuracy", 3), ("macro_f1", 3)])
def test_the_batched_resample_metric_equals_the_metric_on_each_resample(metric: str, classes: int) -> None:
    from embedtune.compare import resampled_metric
    from embedtune.metrics import fast_metric

    rng = np.random.default_rng(1)
    n = 60
    y = rng.integers(0, classes, n)
    probs = rng.dirichlet(np.ones(classes), n).round(2)  # rounded: ties, which AUROC ranks as averages
    index = rng.integers(0, n, (200, n))
    index[0] = np.flatnonzero(y == 0)[0]  # a resample with one class only: AUROC undefined (nan), as one by one
    batched = resampled_metric(metric, probs, y, index)
    looped = np.array([fast_metric(metric, probs[rows], y[rows]) for rows in index])
    assert batched.shape == (200,)
    np.testing.assert_array_equal(batched, looped)


@pytest.mark.parametrize(("metric", "labels"), [("macro_f1", 0), ("macro_f1", 5), ("micro_f1", 5)])
def test_f1_from_resampled_counts_equals_f1_on_each_resample(metric: str, labels: int) -> None:
    """Single-label (labels=0, 12 classes, some never predicted) and multi-label with thresholds and the
    "none" label: the count-based F1 of every resample is fast_metric's on that resample."""
    from embedtune.compare import resampled_metric
    from embedtune.metrics import fast_metric

    rng = np.random.default_rng(2)
    n = 300
    if labels:
        y = (rng.random((n, labels)) < 0.2).astype(np.int64)
        probs, thresholds = rng.random((n, labels)), rng.uniform(0.3, 0.8, labels)
    else:
        y, thresholds = rng.integers(0, 12, n), None
        probs = rng.dirichlet(np.ones(12) * 0.3, n)
    index = rng.integers(0, n, (150, n))
    batched = resampled_metric(metric, probs, y, index, thresholds)
    looped = np.array([fast_metric(metric, probs[rows], y[rows], thresholds) for rows in index])
    np.testing.assert_allclose(batched, looped, rtol=0, atol=1e-12)
