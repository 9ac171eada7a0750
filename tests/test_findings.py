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
