"""Scratch projects (make smoke, the pipeline benchmark, the slow tests): the copy holds the pipeline's code and
never the committed run, and runs its own src/."""

from __future__ import annotations

import subprocess
from pathlib import Path

from embedtune import scratch


def _repo(root: Path) -> Path:
    for name in ("dvc.yaml", "params.yaml", "dvc.lock", "src/pkg/a.py", "results/t/probe.csv",
                 "metrics/t/probe.json", "reports/index.html", "notes.md", "ignored.log"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    (root / ".gitignore").write_text("*.log\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "dvc.yaml", "params.yaml", "dvc.lock", "src", "results", "metrics", "reports",
                    ".gitignore"], cwd=root, check=True)
    return root  # notes.md: untracked but not ignored, so it travels; ignored.log does not


def test_a_scratch_copy_holds_the_code_and_leaves_out_the_committed_run(tmp_path: Path) -> None:
    repo, work = _repo(tmp_path / "repo"), tmp_path / "work"
    names = scratch.copy_tracked(work, repo=repo)
    assert sorted(names) == [".gitignore", "dvc.yaml", "notes.md", "params.yaml", "src/pkg/a.py"]
    assert (work / "src" / "pkg" / "a.py").read_text() == "src/pkg/a.py"
    assert not any((work / d).exists() for d in ("results", "metrics", "reports", "dvc.lock", "ignored.log"))


def test_a_scratch_run_imports_the_copy_and_uses_this_interpreters_dvc(tmp_path: Path) -> None:
    import sys

    env = scratch.dvc_env(tmp_path)
    assert env["PYTHONPATH"] == str(tmp_path / "src")
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert Path(scratch.dvc_executable()).parent == Path(sys.executable).parent


def test_smoke_covers_one_task_per_data_kind_and_smoke_all_every_task() -> None:
    from .conftest import load_script

    smoke = load_script("scripts/smoke.py")
    tasks = {"sentiment": {}, "medical": {}, "legal": {}}
    kinds = {"sentiment": "text", "medical": "image", "legal": "text"}
    assert list(smoke.smoke_tasks(tasks, kinds, every=False)) == ["sentiment", "medical"]
    assert list(smoke.smoke_tasks(tasks, kinds, every=True)) == ["sentiment", "medical", "legal"]


def test_the_readme_smoke_line_states_the_recorded_minutes_and_whether_they_meet_the_aim() -> None:
    from .conftest import load_script

    smoke = load_script("scripts/smoke.py")
    record = {"target": "smoke", "minutes": 4.62, "tasks": ["sentiment", "medical"], "methods": ["full", "lora"],
              "cores": 2, "native_bf16": False, "commit": "abc1234", "date": "2026-12-05"}
    block = smoke.readme_block({"smoke": record})
    assert block.startswith(smoke.README_BEGIN) and block.endswith(smoke.README_END)
    assert "4.6 min (within the 5-minute aim)" in block and "2 cores without native bf16" in block
    slow = smoke.readme_block({"smoke": {**record, "minutes": 8.4}})
    assert "8.4 min (over the 5-minute aim)" in slow
    assert smoke.readme_block({}) == f"{smoke.README_BEGIN}\n{smoke.README_END}"
