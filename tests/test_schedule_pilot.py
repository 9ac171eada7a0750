"""benchmarks/schedule_pilot.py: variants name valid schedule settings, and replayed stop rules read one trajectory."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from .conftest import load_script


def _pilot():
    return load_script("benchmarks/schedule_pilot.py")


def test_a_variant_takes_a_stop_rule_and_rejects_an_unknown_one() -> None:
    pilot = _pilot()
    assert pilot.parse_variant("e:stop_on=either,max_rounds=12") == ("e", {"stop_on": "either", "max_rounds": 12})
    with pytest.raises(SystemExit, match="allowed values"):
        pilot.parse_variant("e:stop_on=sometimes")
    with pytest.raises(SystemExit, match="expected stop_on:patience"):
        pilot.parse_rule("either:0")


def test_replay_prices_each_rule_on_the_same_trajectory() -> None:
    pilot = _pilot()
    key = {"task": "t", "method": "full", "budget": 64, "seed": 0}
    frame = pd.DataFrame([
        {**key, "variant": "committed", "steps": 40},
        # accuracy climbs to round 3 while the loss turns up after round 1; then both stall
        {**key, "variant": "either", "steps": 60, "cap": 8, "round_steps": json.dumps([10, 20, 30, 40, 50, 60]),
         "val_metrics": json.dumps([0.1, 0.2, 0.3, 0.4, 0.4, 0.4]),
         "val_losses": json.dumps([1.0, 0.9, 1.1, 1.2, 1.3, 1.4])},
    ])
    out = pilot.replay(frame, [("val_loss", 2), ("either", 2), ("either", 3)]).set_index("rule")
    assert out.loc["val_loss:2", "steps"] == 40 and bool(out.loc["val_loss:2", "still_improving"])
    assert out.loc["either:2", "steps"] == 60 and not bool(out.loc["either:2", "still_improving"])
    assert out.loc["either:2", "committed_steps"] == 40 and out.loc["either:2", "val_score"] == 0.4
    assert not bool(out.loc["either:3", "replayed"])  # it would train past the six rounds the run has
