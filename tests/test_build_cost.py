"""The probe's build cost comes from the run store (the stored probe fits' embedding time), so a re-render on
another host leaves costs and picks as they were; the pick's gain over the probe is the paired difference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedtune.stages.compare import stored_embed_seconds_per_row


def test_the_embedding_seconds_per_row_are_the_stored_probe_fits_own() -> None:
    rows = pd.DataFrame({"method": ["probe", "probe", "full"], "budget": [16, 64, 16], "n_val": [84, 36, 84],
                         "embed_seconds": [0.5, 0.6, np.nan]})
    # 0.5 s over 100 rows and 0.6 s over 100 rows: 0.005 and 0.006, median 0.0055
    assert stored_embed_seconds_per_row(rows, "legal") == pytest.approx(0.0055)
    with pytest.raises(ValueError, match="embed_seconds.*EMBEDTUNE_STORE=cold dvc repro probe@legal"):
        stored_embed_seconds_per_row(rows.drop(columns="embed_seconds"), "legal")


def test_the_guide_writes_the_paired_gain_over_the_probe() -> None:
    from embedtune.decision import decision_guide

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    preds, rows = {}, []
    for method, skill in (("probe", 0.6), ("full", 0.9)):
        preds[method] = {"y_val": y}
        for seed in range(3):
            right = rng.random(200) < skill
            probs = np.where(right, y, 1 - y).astype(float)
            preds[method][f"s{seed}_b64"] = preds[method][f"val_s{seed}_b64"] = np.stack([1 - probs, probs], axis=1)
            rows.append({"method": method, "seed": seed, "budget": 64, "accuracy": skill, "train_seconds": 1.0,
                         "infer_ms_per_1000": 1.0, "n_val": 200})
    comparisons = pd.DataFrame([{"method_a": "full", "method_b": "probe", "budget": 64, "diff_points": 27.5,
                                 "ci_low": 20.0, "ci_high": 35.0, "significant": True}])
    guide = decision_guide(pd.DataFrame(rows), preds, metric="accuracy", embed_seconds_per_row=None, n_boot=100,
                           comparisons=comparisons)
    assert guide.loc[0, "pick"] == "full" and guide.loc[0, "pick_gain_over_probe_points"] == 27.5
    alone = decision_guide(pd.DataFrame(rows), preds, metric="accuracy", embed_seconds_per_row=None, n_boot=100)
    assert np.isnan(alone.loc[0, "pick_gain_over_probe_points"])  # no comparisons: no gain, never an unpaired one
