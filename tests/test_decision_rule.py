"""The decision rule (decision.py) proven by simulation: synthetic runs with a known truth and noise like the
committed run's (500 selection rows; a seed's spread of ~2 points), scored by the rule's regret (the true
loss of its pick against the truly best) and how often its pick is within the margin of the truly best."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedtune.decision import decide, decision_guide, resample_means

N_ROWS, SEED_SD, ROW_SD = 500, 0.02, 1.0


def _runs(truth: dict[str, float], seeds: int, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """Binary selection rows: each method's seed-s run is right on a row with probability from its true
    accuracy, a seed effect and a row difficulty shared by every method (the rows are shared)."""
    from scipy.special import expit, logit

    y = rng.integers(0, 2, N_ROWS)
    difficulty = rng.normal(0, ROW_SD, N_ROWS)
    runs = {}
    for m, acc in truth.items():
        per_seed = []
        for _ in range(seeds):
            p_right = expit(logit(np.clip(acc + rng.normal(0, SEED_SD), 0.01, 0.99)) - difficulty + difficulty.mean())
            right = rng.random(N_ROWS) < p_right
            p_true_class = np.where(right, 0.8, 0.2)
            probs = np.where(y[:, None] == np.arange(2)[None, :], p_true_class[:, None], 1 - p_true_class[:, None])
            per_seed.append((probs, None))
        runs[m] = per_seed
    return runs, y


def _simulate(truth: dict[str, float], build: dict[str, float], *, draws: int, seeds: int, margin: float,
              seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    regrets, picks = [], []
    for i in range(draws):
        runs, y = _runs(truth, seeds, rng)
        observed, boot = resample_means(runs, y, metric="accuracy", n_boot=200, seed=i)
        got = decide(observed, boot, build, margin_points=margin)
        regrets.append(100 * (max(truth.values()) - truth[got["pick"]]))
        picks.append(got["pick"])
    return np.asarray(regrets), picks


BUILD = {"probe": 1.0, "partial": 10.0, "lora": 20.0, "full": 30.0}


@pytest.mark.parametrize("truth", [
    {"probe": 0.70, "partial": 0.73, "lora": 0.75, "full": 0.75},    # two best tie; probe clearly worse
    {"probe": 0.66, "partial": 0.74, "lora": 0.745, "full": 0.75},  # a half-point ladder at the top
])
def test_the_rule_keeps_its_regret_within_the_margin(truth) -> None:
    regrets, picks = _simulate(truth, BUILD, draws=40, seeds=10, margin=1.0)
    assert regrets.mean() <= 1.0, (regrets.mean(), picks)
    assert np.mean(regrets <= 1.0 + 1e-9) >= 0.8, (regrets, picks)
    assert "probe" not in picks  # a method 5+ points worse is never picked


def test_a_truly_equal_cheaper_method_is_picked_and_a_clearly_better_one_is_found() -> None:
    equal = {"probe": 0.70, "partial": 0.75, "lora": 0.75, "full": 0.75}
    _, picks = _simulate(equal, BUILD, draws=30, seeds=10, margin=1.0, seed=1)
    assert picks.count("partial") >= 15, picks  # the cheapest of three equals, most of the time
    better = {"probe": 0.70, "partial": 0.70, "lora": 0.71, "full": 0.76}
    regrets, picks = _simulate(better, BUILD, draws=30, seeds=10, margin=1.0, seed=2)
    assert picks.count("full") >= 27 and regrets.mean() < 1.0, picks


def test_the_decision_reads_the_selection_rows_never_the_test_split() -> None:
    """Two guides from the same selection-row predictions and different test scores pick the same method;
    a method's test score only shows in the report columns."""
    rng = np.random.default_rng(3)
    runs, y = _runs({"probe": 0.70, "full": 0.78}, 3, rng)
    preds = {m: {"y_val": y, **{f"s{i}_b64": r[0] for i, r in enumerate(rs)},
                 **{f"val_s{i}_b64": r[0] for i, r in enumerate(rs)}} for m, rs in runs.items()}
    rows = [{"method": m, "seed": i, "budget": 64, "accuracy": acc, "n_val": N_ROWS, "train_seconds": cost,
             "infer_ms_per_1000": 1.0} for m, acc, cost in (("probe", 0.70, 1.0), ("full", 0.78, 30.0))
            for i in range(3)]
    guide = decision_guide(pd.DataFrame(rows), preds, metric="accuracy", embed_seconds_per_row=None, n_boot=200)
    flipped = pd.DataFrame(rows).assign(accuracy=lambda f: np.where(f["method"] == "full", 0.60, 0.70))
    guide_flipped = decision_guide(flipped, preds, metric="accuracy", embed_seconds_per_row=None, n_boot=200)
    assert guide["pick"].iloc[0] == guide_flipped["pick"].iloc[0] == "full"
    assert guide["rule_source"].iloc[0] == "selection rows"
    assert guide_flipped["pick_mean"].iloc[0] == pytest.approx(0.60)  # the report, not the rule, moved
    del preds["full"]["val_s0_b64"]
    with pytest.raises(ValueError, match="selection-row predictions.*dvc repro probe finetune"):
        decision_guide(pd.DataFrame(rows), preds, metric="accuracy", embed_seconds_per_row=None, n_boot=50)


def test_build_cost_carries_lp_fts_probe_and_the_learning_rate_search() -> None:
    from embedtune.decision import cost_to_build, search_seconds

    results = pd.DataFrame([
        {"method": "probe", "seed": 0, "budget": 64, "train_seconds": 1.0},
        {"method": "lp_ft", "seed": 0, "budget": 64, "train_seconds": 10.0},
        {"method": "full", "seed": 0, "budget": 64, "train_seconds": 20.0},
        {"method": "full", "seed": 0, "budget": 4000, "train_seconds": 200.0}])
    hparams = pd.DataFrame([
        {"method": "full", "hyperparameter": "lr", "budget": 64, "train_seconds": 5.0},
        {"method": "full", "hyperparameter": "lr", "budget": 64, "train_seconds": 6.0},
        {"method": "full", "hyperparameter": "lr", "budget": 1024, "train_seconds": 50.0},
        {"method": "probe", "hyperparameter": "C", "budget": 64, "train_seconds": None}])
    search = search_seconds(hparams)
    assert search == {("full", 64): 11.0, ("full", 1024): 50.0}
    cost = cost_to_build(results, embed_seconds_per_row=0.01, n_val=100, search_seconds=search)
    probe = 1.0 + 0.01 * (64 + 100)
    assert cost.tolist() == pytest.approx([probe, 10.0 + probe, 20.0 + 11.0, 200.0 + 50.0])
