"""Generated findings follow the data: flip a comparison and the sentence flips."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from embedtune import findings, tables


def _comparisons(diff: float, low: float, high: float) -> pd.DataFrame:
    return pd.DataFrame([{"method_a": "full", "method_b": "probe", "budget": 256, "metric": "accuracy",
                          "diff_points": diff, "ci_low": low, "ci_high": high, "significant": low > 0 or high < 0,
                          "n_seeds": 3}])


def _headline() -> dict:
    return {"metric": "accuracy", "budget": 256, "methods": {"probe": {"mean": 0.70, "std": 0.01},
                                                             "full": {"mean": 0.73, "std": 0.02}},
            "crossing_budget": {"full": 256}}


def _results(full_mean: float) -> pd.DataFrame:
    rows = []
    for seed in range(3):
        rows.append({"method": "probe", "seed": seed, "budget": 256, "accuracy": 0.70, "train_seconds": 0.1,
                     "infer_ms_per_1000": 5000.0, "n_val": 100, "peak_mem_mib": 10.0, "trainable_params": 770})
        rows.append({"method": "full", "seed": seed, "budget": 256, "accuracy": full_mean, "train_seconds": 30.0,
                     "infer_ms_per_1000": 6000.0, "n_val": 100, "peak_mem_mib": 900.0,
                     "trainable_params": 22_000_000, "still_improving": seed == 0})
    return pd.DataFrame(rows)


def _sentences(comparisons: pd.DataFrame) -> list[str]:
    return findings.task_findings("sentiment", results=_results(0.73), comparisons=comparisons,
                                  headline=_headline(), shift_compare=pd.DataFrame(), hparams=pd.DataFrame())


def test_a_flipped_comparison_flips_the_sentence() -> None:
    wins = _sentences(_comparisons(3.3, 1.0, 5.6))
    loses = _sentences(_comparisons(-3.3, -5.6, -1.0))
    tie = _sentences(_comparisons(0.4, -1.2, 2.0))
    assert any("`full` beats `probe` at 256 labels by 3.3 points (95% CI [1.0, 5.6]" in s for s in wins)
    assert any("`full` loses to `probe` at 256 labels by 3.3 points" in s for s in loses)
    assert any("do not differ significantly at 256 labels (+0.4 points" in s for s in tie)
    assert not any("beats" in s and "`full`" in s and "probe`" in s for s in loses)
    assert any("33% of the 3 tuned runs were still improving" in s for s in wins)


def _decision_fixture(*, cheap_noise: float, cheap_shift: float, seeds: int, n_test: int = 2000,
                      seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """A binary task where `full` (expensive) is right with p=0.80 per example and seed and `probe` (cheap) with
    0.80 + `cheap_shift`, its per-seed accuracy wobbling by ±`cheap_noise` (an unstable cheap method)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_test)
    # the same rows serve as selection rows (val_*) and test rows: the rule reads the former only
    preds: dict[str, dict[str, np.ndarray]] = {"probe": {"y_test": y, "y_val": y}, "full": {"y_test": y, "y_val": y}}
    rows = []
    for method, cost in (("probe", 1.0), ("full", 100.0)):
        for s in range(seeds):
            p_right = 0.80 + (cheap_shift + cheap_noise * rng.normal() if method == "probe" else 0.0)
            right = rng.random(n_test) < p_right
            label = np.where(right, y, 1 - y)
            probs = np.stack([1 - label, label], 1).astype(float) * 0.8 + 0.1
            preds[method][f"s{s}_b256"] = probs
            preds[method][f"val_s{s}_b256"] = probs
            rows.append({"method": method, "seed": s, "budget": 256, "accuracy": float((probs.argmax(1) == y).mean()),
                         "train_seconds": cost, "infer_ms_per_1000": 1.0, "n_val": 100})
    return pd.DataFrame(rows), preds


def test_a_noisier_worse_cheap_method_is_rarely_picked_at_the_planned_seeds() -> None:
    """A cheap method 3 points worse and very unstable across seeds (sd 6 points), at the 10 seeds the cpu
    profile plans for small budgets: picked in at most 3 of 20 draws (the seed term's t tails keep its
    expected loss above the margin unless its seeds happen to agree)."""
    from embedtune.decision import decision_guide

    picks = []
    for seed in range(20):
        results, preds = _decision_fixture(cheap_noise=0.06, cheap_shift=-0.03, seeds=10, seed=seed)
        guide = decision_guide(results, preds, metric="accuracy", embed_seconds_per_row=None, n_boot=200)
        picks.append(guide.iloc[0]["pick"])
    assert picks.count("probe") <= 3, picks


def test_a_truly_equal_cheap_method_is_picked_once_the_evidence_is_enough() -> None:
    from embedtune.decision import decision_guide, guide_sentence

    few, preds_few = _decision_fixture(cheap_noise=0.01, cheap_shift=0.0, seeds=2, n_test=300)
    many, preds_many = _decision_fixture(cheap_noise=0.0, cheap_shift=0.0, seeds=10, n_test=4000)
    thin = decision_guide(few, preds_few, metric="accuracy", embed_seconds_per_row=None, margin=1.0, n_boot=200)
    enough = decision_guide(many, preds_many, metric="accuracy", embed_seconds_per_row=None, margin=1.0, n_boot=200)
    assert thin.iloc[0]["pick"] == thin.iloc[0]["best"]  # 2 seeds on 300 rows cannot show it within 1 point
    row = enough.iloc[0]
    assert row["pick"] == "probe" and row["runner_up"] != row["best"] and row["runner_up"] in ("probe", "full")
    assert row["expected_loss_points"] < 1.0 and row["detectable_points"] < thin.iloc[0]["detectable_points"]
    sentence = guide_sentence("sentiment", enough, "accuracy")
    assert "At 256 labels `probe` and `full` cannot be told apart on the selection rows; pick `probe`" in sentence


def test_summary_table_has_no_nan_where_a_number_exists() -> None:
    per_task = {"sentiment": {"headline": {**_headline(), "all_labels": {"budget": 256, "methods": {}}},
                              "results": _results(0.73), "comparisons": _comparisons(3.3, 1.0, 5.6),
                              "gap": pd.DataFrame()}}
    table = tables.summary_table(per_task)
    assert list(table["method"]) == ["probe", "full"]
    assert not table.isna().any().any()
    full = table[table["method"] == "full"].iloc[0]
    assert full["gain_vs_probe_points"] == "+3.3 [+1.0, +5.6]*" and full["train_time_x_probe"] == 300.0
    # what a reader sees: no cell with more than 4 significant digits
    shown = tables.readable(table)
    for value in shown.to_numpy().ravel():
        for number in re.findall(r"\d[\d.]*(?:e[-+]?\d+)?", str(value)):
            mantissa = number.split("e")[0]
            # "29000" holds 2 significant digits; "0.7000" holds 4
            mantissa = (mantissa.replace(".", "") if "." in mantissa else mantissa.rstrip("0")).lstrip("0")
            assert len(mantissa) <= 4, f"{value!r}: {number} has more than 4 significant digits"


def _all_labels_headline(best_value: float) -> dict:
    return {**_headline(), "all_labels": {"budget": 10199, "methods": {"probe": {"mean": 0.80, "std": 0.0},
                                                                         "full": {"mean": best_value, "std": 0.0}}}}


def test_the_aim_sentence_follows_the_full_data_result() -> None:
    short = findings.aim_finding("sentiment", _all_labels_headline(0.805))
    met = findings.aim_finding("sentiment", _all_labels_headline(0.87))
    assert short is not None and "`full` at 0.805: short by 1.5 points." in short
    assert met is not None and "`full` at 0.870: met." in met
    # short of the aim: the evidence on the schedule, read from the best tuned run's row
    rows = pd.DataFrame([{"method": "full", "budget": 10199, "accuracy": 0.80, "epochs_seen": 3.4,
                          "stop_reason": "patience", "still_improving": False}])
    evidence = findings.aim_finding("sentiment", _all_labels_headline(0.805), rows)
    assert "saw 3.4 epochs and stopped on patience, past its best evaluation." in evidence
    assert findings.aim_finding("my_own_task", _all_labels_headline(0.87)) is None  # no published aim
    assert findings.aim_finding("sentiment", {**_all_labels_headline(0.87), "metric": "macro_f1"}) is None


def test_schedule_findings_read_the_rows_and_catch_unequal_selection_rows() -> None:
    rows = _results(0.73).assign(steps=[0, 60, 0, 90, 0, 120], train_samples_per_s=2.0, infer_seconds=1.0,
                                 epochs_seen=3.0, stop_reason="patience", still_improving=False)
    sentences = findings.schedule_findings(rows)
    assert "Every method (2) selected on the same 100 validation rows." in sentences
    assert "Tuned runs took 60–120 optimizer steps (median 90)." in sentences
    assert ("At 256 labels the tuned runs saw 3 epochs of their training rows; they stopped 3 on patience; 0 of 3 "
            "still improving at the end.") in sentences  # one value, not a range
    spread = findings.schedule_findings(rows.assign(epochs_seen=[0, 2.0, 0, 2.5, 0, 4.0],
                                                    stop_reason=["", "patience", "", "round cap", "", "patience"]))
    assert any(s.startswith("At 256 labels the tuned runs saw 2–4 epochs") and "2 on patience, 1 on round cap" in s
               for s in spread)
    unequal = rows.assign(n_val=[100, 100, 100, 100, 100, 50])
    assert any(s.startswith("Methods selected on different numbers of validation rows") and "[50, 100]" in s
               for s in findings.schedule_findings(unequal))


def test_the_run_time_sentence_reads_the_record_and_says_when_there_is_none() -> None:
    record = {"profile": "cpu", "commit": "abc1234", "dirty": False, "cores": 2, "started": "2026-11-28 09:25 UTC",
              "wall_seconds": 5400.0, "stages": [{"stage": "probe@a", "seconds": 60.0},
                                                 {"stage": "finetune@a-full", "seconds": 600.0}]}
    first, slowest = findings.run_time_sentences(record)
    assert "took 90 min of wall time on 2 cores and ran 2 stages" in first and "uncommitted" not in first
    assert slowest.startswith("Slowest stages: `finetune@a-full` 10.0 min, `probe@a` 1.0 min")
    assert "uncommitted" in findings.run_time_sentences({**record, "dirty": True})[0]
    assert findings.run_time_sentences(None)[0].startswith("No timed run is recorded yet")
    resumed = findings.run_time_sentences({**record, "parts": 2})[0]
    assert "took 90 min of wall time on 2 cores in 2 parts (interrupted, then resumed" in resumed
    assert "is unfinished after 90 min" in findings.run_time_sentences({**record, "complete": False})[0]
    assert "### Run time (generated)" in findings.readme_block({}, run_time=record)
    two = findings.run_time_sentences({**record, "parts": 2, "commits": ["abc1234", "def5678"]})[0]
    assert "commits `abc1234`, `def5678` (no pipeline source changed between them)" in two


def test_the_still_improving_share_is_counted_over_every_task_against_the_aim() -> None:
    def task(flags: list[bool], restarts: list[int]) -> dict[str, object]:
        return {"results": pd.DataFrame({"method": ["probe"] + ["full"] * len(flags),
                                         "still_improving": [False, *flags], "lr_restarts": [0, *restarts],
                                         "learned": True})}
    met = findings.across_tasks_findings({"a": task([False] * 9 + [True], [0] * 10),
                                          "b": task([False] * 10, [1] + [0] * 9)})
    assert met[0].startswith("1 of the 20 tuned runs over all tasks (5.0%)") and met[0].endswith(": met.")
    assert met[1].startswith("1 of the 20 tuned runs did not learn at their searched rate")  # the probe is not counted
    short = findings.across_tasks_findings({"a": task([True, True] + [False] * 8, [0] * 10)})
    assert "(20.0%)" in short[0] and "not met (the round cap ended 2 runs while they still gained)" in short[0]
    stopped = task([True, True, True] + [False] * 7, [0] * 10)
    stopped["results"]["stop_reason"] = ["patience", "round cap", "patience", "patience"] + ["patience"] * 7
    (cause,) = [s for s in findings.across_tasks_findings({"a": stopped}) if "not met" in s]
    assert "not met (the round cap ended 1 runs while they still gained; 2 stopped on patience with the selection " \
           "metric at its best on their last evaluation)" in cause


def test_restarts_recorded_by_the_runs_are_stated() -> None:
    rows = pd.DataFrame({"method": ["lora", "lora", "full"], "seed": [0, 1, 0], "budget": [5477, 256, 256],
                         "lr": [0.001, 0.001, 1e-4], "lr_searched": [0.003, 0.003, 1e-4], "lr_restarts": [1, 1, 0],
                         "learned": [True, False, True]})
    (sentence,) = findings.training_failures(rows)
    assert sentence.startswith("`lora` did not learn at its searched rate in 2 of 2 runs")
    assert "5477 labels seed 0 (0.003 → 0.001, learned)" in sentence and "still did not learn" in sentence
    assert findings.training_failures(rows.assign(lr_restarts=0, learned=True)) == []


def test_the_layer_probe_finding_says_how_much_of_the_gap_it_closes_and_where_it_reads() -> None:
    from embedtune.findings import layer_probe_findings

    rows = [{"method": m, "seed": s, "budget": 256, "accuracy": acc, "train_seconds": sec, "infer_ms_per_1000": 5.0}
            for m, acc, sec in (("probe", 0.70, 1.0), ("layer_probe", 0.72, 2.0), ("full", 0.74, 100.0))
            for s in range(3)]
    comparisons = pd.DataFrame([{"method_a": "full", "method_b": "layer_probe", "budget": 256, "metric": "accuracy",
                                 "diff_points": 2.0, "ci_low": 0.5, "ci_high": 3.5, "significant": True}])
    mass = pd.DataFrame([{"budget": b, "seed": 0, "block": k, "mass": m} for b, masses in
                         ((16, (0.1, 0.7, 0.2)), (256, (0.1, 0.2, 0.7))) for k, m in enumerate(masses)])
    text = layer_probe_findings(results=pd.DataFrame(rows), comparisons=comparisons, budget=256, mass=mass)
    assert "closing 50% of the probe's 4.0-point gap" in text[0] and "`full` − `layer_probe` +2.0 points" in text[0]
    assert "builds in 2.0% of `full`'s time" in text[0]
    assert text[1].endswith("at 16 labels block 1, at 256 labels block 2.")


def test_the_readme_results_block_stays_under_25_bullets() -> None:
    """Issue 32: ~100 bullets once; the README keeps the answers and a few findings per task."""
    guide = pd.DataFrame([{"budget": 256, "pick": "full", "best": "full", "tied": "full", "pick_mean": 0.73,
                           "pick_seeds": 3, "expected_loss_points": 0.0, "p_best full": 1.0, "margin_points": 1.0,
                           "pick_gain_over_probe_points": 3.0, "pick_build_seconds": 30.0,
                           "pick_serve_seconds_per_1000": 6.0}])
    per_task = {t: {"headline": _headline(), "results": _results(0.73), "comparisons": _comparisons(3.3, 1.0, 5.6),
                    "shift_compare": pd.DataFrame(), "hparams": pd.DataFrame(), "guide": guide}
                for t in ("sentiment", "medical", "legal", "a_fourth_task")}
    block = findings.readme_block(per_task)
    bullets = [line for line in block.splitlines() if line.startswith("- ")]
    assert len(bullets) <= 25, len(bullets)
    assert sum("**medical**" in b for b in bullets) == 1  # its ranking, once (the answer is the results block's grid)


def test_the_schedule_finding_counts_kept_checkpoints_at_a_tenth_of_the_peak_rate() -> None:
    tuned = pd.DataFrame({"lr_frac_at_best": [0.05, 0.1, 0.5, 0.66]})
    (sentence,) = findings.annealed_findings(tuned)
    assert sentence.startswith("2 of the 4 tuned runs kept a checkpoint at ≤ 10%") and "median 30%" in sentence
    assert "not met" in sentence and "schedule-pilot-4.md" in sentence
    (done,) = findings.annealed_findings(pd.DataFrame({"lr_frac_at_best": [0.05, 0.02]}))
    assert done.endswith("aim: every run: met.")
    assert findings.annealed_findings(pd.DataFrame({"lr": [1e-4]})) == []


def test_the_seeds_sentence_counts_each_budgets_seeds_and_a_shared_fit_once() -> None:
    import pandas as pd

    from embedtune.tables import seeds_sentence

    rows = [{"method": "full", "budget": b, "seed": s} for b, n in ((64, 10), (1024, 5), (5000, 3)) for s in range(n)]
    rows += [{"method": "probe", "budget": 64, "seed": s, "fit_seed": s} for s in range(10)]
    rows += [{"method": "probe", "budget": 5000, "seed": s, "fit_seed": 0} for s in range(10)]
    other = [{"method": "lora", "budget": b, "seed": s} for b, n in ((64, 8), (4000, 3)) for s in range(n)]
    sentence = seeds_sentence({"a": {"results": pd.DataFrame(rows)}, "b": {"results": pd.DataFrame(other)}})
    assert "tuned methods: 64 labels 8–10, 1,024 labels 5, all labels 3" in sentence
    assert "probe, layer probe and classic: 64 labels 10, all labels 1" in sentence


def test_a_pick_that_the_test_split_disagrees_with_is_reported_with_each_methods_gap() -> None:
    from embedtune.decision import selection_test_findings

    guide = pd.DataFrame([
        {"budget": 64, "pick": "classic", "margin_points": 1.0, "selection classic": 0.969, "test classic": 0.894,
         "selection lp_ft": 0.971, "test lp_ft": 0.934},
        {"budget": 256, "pick": "lora", "margin_points": 1.0, "selection classic": 0.981, "test classic": 0.906,
         "selection lora": 0.985, "test lora": 0.956},
    ])
    found = selection_test_findings(guide)
    assert len(found) == 1, found  # at 256 the pick is also the test-best: nothing to report
    assert "At 64 labels the selection rows pick `classic`" in found[0]
    assert "4.0 points below `lp_ft` (0.934)" in found[0]
    assert "`classic` +7.5" in found[0] and "`lp_ft` +3.7" in found[0]
    # within the margin on test: no sentence
    guide.loc[0, "test classic"] = 0.930
    assert selection_test_findings(guide) == []
    assert selection_test_findings(None) == []


def test_the_all_labels_sentence_states_the_seeds_each_method_ran_and_no_crossing_is_said_once() -> None:
    headline = {**_headline(), "crossing_budget": {"full": None, "lora": None, "partial": 256},
                "all_labels": {"budget": 10199, "methods": {"probe": {"mean": 0.80, "seeds": 1},
                                                            "full": {"mean": 0.83, "seeds": 3},
                                                            "lora": {"mean": 0.82, "seeds": 3}}}}
    out = findings.task_findings("sentiment", results=_results(0.73), comparisons=_comparisons(3.3, 1.0, 5.6),
                                 headline=headline, shift_compare=pd.DataFrame(), hparams=pd.DataFrame())
    (all_labels,) = [s for s in out if s.startswith("With all 10199 training labels")]
    assert "(best `full`; 1 fit: `probe`; 3 seeds: `full`, `lora`)" in all_labels
    assert "one seed" not in " ".join(out)
    assert sum("crossing budget" in s for s in out) == 1
    assert any(s.startswith("No crossing budget for `full`, `lora`:") for s in out)
    assert any("`partial` beats the probe significantly from 256 labels on" in s for s in out)
