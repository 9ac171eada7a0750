"""Generated findings follow the data: flip a comparison and the sentence flips."""

from __future__ import annotations

import pandas as pd

from embedtune import findings


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


def test_decision_guide_picks_the_cheapest_tied_method_and_flips_with_the_data() -> None:
    tied = findings.decision_guide(_results(0.71), _comparisons(1.0, -1.0, 3.0), metric="accuracy",
                                   embed_seconds_per_row=0.005)
    assert tied.loc[0, "best"] == "full" and tied.loc[0, "pick"] == "probe"  # tie → the cheaper one
    # cost to build the probe includes embedding budget + selection rows: 0.1 s + 0.005 × (256 + 100)
    assert abs(tied.loc[0, "build_s probe"] - (0.1 + 0.005 * 356)) < 1e-9
    won = findings.decision_guide(_results(0.75), _comparisons(5.0, 3.0, 7.0), metric="accuracy",
                                  embed_seconds_per_row=0.005)
    assert won.loc[0, "pick"] == "full"
    assert "256 labels → `full`" in findings.guide_sentence("sentiment", won, "accuracy")


def test_summary_table_has_no_nan_where_a_number_exists() -> None:
    per_task = {"sentiment": {"headline": {**_headline(), "all_labels": {"budget": 256, "methods": {}}},
                              "results": _results(0.73), "comparisons": _comparisons(3.3, 1.0, 5.6),
                              "gap": pd.DataFrame()}}
    table = findings.summary_table(per_task)
    assert list(table["method"]) == ["probe", "full"]
    assert not table.isna().any().any()
    full = table[table["method"] == "full"].iloc[0]
    assert full["gain_vs_probe_points"] == "+3.3 [1.0, 5.6]" and full["train_time_x_probe"] == 300.0


def _all_labels_headline(best_value: float) -> dict:
    return {**_headline(), "all_labels": {"budget": 10199, "methods": {"probe": {"mean": 0.80, "std": 0.0},
                                                                         "full": {"mean": best_value, "std": 0.0}}}}


def test_the_aim_sentence_follows_the_full_data_result() -> None:
    short = findings.aim_finding("sentiment", _all_labels_headline(0.83))
    met = findings.aim_finding("sentiment", _all_labels_headline(0.87))
    assert short is not None and "`full` at 0.830: short by 2.0 points" in short
    assert met is not None and met.endswith("`full` at 0.870: met.")
    assert findings.aim_finding("my_own_task", _all_labels_headline(0.87)) is None  # no published aim
    assert findings.aim_finding("sentiment", {**_all_labels_headline(0.87), "metric": "macro_f1"}) is None


def test_schedule_findings_read_the_rows_and_catch_unequal_selection_rows() -> None:
    rows = _results(0.73).assign(steps=[0, 60, 0, 90, 0, 120], train_samples_per_s=2.0, infer_seconds=1.0)
    sentences = findings.schedule_findings(rows)
    assert "Every method (2) selected on the same 100 validation rows." in sentences
    assert "Tuned runs took 60–120 optimizer steps (median 90)." in sentences
    # samples trained = 2.0 samples/s × 30 s = 60 examples over 256 labels
    assert "At 256 labels the tuned runs saw 0.23 epochs of their training rows." in sentences  # one value, not a range
    spread = findings.schedule_findings(rows.assign(train_seconds=[30.0, 30.0, 30.0, 30.0, 30.0, 60.0]))
    assert "At 256 labels the tuned runs saw 0.23–0.47 epochs of their training rows." in spread
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


def test_a_run_that_did_not_learn_is_named_and_a_learning_run_is_not() -> None:
    def curve(losses: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"method": "lora", "seed": 0, "budget": 5477, "train_loss": losses,
                             "val_metric": [0.02] * len(losses)})

    results = pd.DataFrame({"method": ["lora"], "lr": [0.003]})
    stuck = findings.training_failures(curve([1.17, 1.14, 1.13]), results)
    assert len(stuck) == 1 and "`lora` did not learn in 1 of 1 runs" in stuck[0]
    assert "5477 labels seed 0 (loss 1.17 → 1.13" in stuck[0] and "(0.003)" in stuck[0]
    assert findings.training_failures(curve([1.17, 0.50, 0.20]), results) == []
    assert findings.training_failures(None, results) == []


def test_restarts_recorded_by_the_runs_are_stated() -> None:
    rows = pd.DataFrame({"method": ["lora", "lora", "full"], "seed": [0, 1, 0], "budget": [5477, 256, 256],
                         "lr": [0.001, 0.001, 1e-4], "lr_searched": [0.003, 0.003, 1e-4], "lr_restarts": [1, 1, 0],
                         "learned": [True, False, True]})
    (sentence,) = findings.training_failures(None, rows)
    assert sentence.startswith("`lora` did not learn at its searched rate in 2 of 2 runs")
    assert "5477 labels seed 0 (0.003 → 0.001, learned)" in sentence and "still did not learn" in sentence
    assert findings.training_failures(None, rows.assign(lr_restarts=0, learned=True)) == []
