"""scripts/timed_repro.py times each stage dvc announces and records the run for the README."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .conftest import load_script


def _script():
    return load_script("scripts/timed_repro.py")


def test_each_announced_stage_gets_the_time_until_the_next_one(tmp_path: Path) -> None:
    timed = _script()
    fake_dvc = ("import time\nprint(\"Running stage 'prepare@a':\", flush=True)\ntime.sleep(0.3)\n"
                "print('some output', flush=True)\nprint(\"Running stage 'probe@a':\", flush=True)\ntime.sleep(0.1)\n")
    code, stages, started, finished = timed.timed_run([sys.executable, "-c", fake_dvc])
    assert code == 0 and [s["stage"] for s in stages] == ["prepare@a", "probe@a"]
    assert 0.25 <= stages[0]["seconds"] < 2.0 and 0.05 <= stages[1]["seconds"] < stages[0]["seconds"]
    data = timed.record(stages, started, finished)
    assert data["wall_seconds"] >= stages[0]["seconds"] + stages[1]["seconds"] - 0.1
    assert set(data) >= {"profile", "commit", "dirty", "cores", "started", "finished", "stages"}
    target = tmp_path / "reports" / "run-time.json"
    timed.write_record(data, target)
    assert json.loads(target.read_text())["stages"][0]["stage"] == "prepare@a"
    assert not list(target.parent.glob(".*.tmp"))


def test_a_failed_run_reports_its_exit_code() -> None:
    code, stages, _, _ = _script().timed_run([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert code == 3 and stages == []


def test_an_interrupted_run_is_resumed_and_its_parts_add_up(tmp_path: Path) -> None:
    timed = _script()
    first = timed.record([{"stage": "prepare@a", "seconds": 10.0}], 0.0, 12.0, complete=False)
    assert first["complete"] is False and first["parts"] == 1
    resumed = timed.record([{"stage": "probe@a", "seconds": 5.0}], 100.0, 106.0, resumed=first)
    assert resumed["complete"] is True and resumed["parts"] == 2 and resumed["wall_seconds"] == 18.0
    assert [s["stage"] for s in resumed["stages"]] == ["prepare@a", "probe@a"]
    target = tmp_path / "run-time.json"
    timed.write_record(first, target)
    assert timed.unfinished(target) == json.loads(target.read_text())  # same profile and commit: resumed
    timed.write_record(resumed, target)
    assert timed.unfinished(target) is None  # a complete record is never resumed


def test_a_record_is_resumed_only_while_the_pipeline_sources_are_unchanged(tmp_path: Path) -> None:
    timed = _script()
    first = timed.record([{"stage": "prepare@a", "seconds": 10.0}], 0.0, 12.0, complete=False)
    assert first["commits"] == [first["commit"]]
    target = tmp_path / "run-time.json"
    root = timed._git("rev-list", "--max-parents=0", "HEAD").splitlines()[-1][:7]  # the first commit: no src yet
    for commit in (root, "0000000"):  # sources differ; a commit git does not know
        timed.write_record({**first, "commit": commit, "commits": [commit]}, target)
        assert timed.unfinished(target) is None
    assert timed.record([], 0.0, 1.0, resumed={**first, "commits": ["abc1234"]})["commits"] == [
        "abc1234", first["commit"]]


def test_the_record_names_the_commit_its_part_started_at() -> None:
    timed = _script()
    data = timed.record([{"stage": "prepare@a", "seconds": 1.0}], 0.0, 2.0, commit="1234abc")
    assert data["commit"] == "1234abc" and data["commits"] == ["1234abc"]
    later = timed.record([{"stage": "probe@a", "seconds": 1.0}], 10.0, 12.0, resumed=data, commit="5678def")
    assert later["commit"] == "5678def" and later["commits"] == ["1234abc", "5678def"]
