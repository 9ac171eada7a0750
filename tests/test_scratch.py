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
    assert "(one serial `dvc repro`)" in block
    side = smoke.readme_block({"smoke": {**record, "branches": ["sentiment", "medical"], "torch_threads": 1}})
    assert "(2 task branches side by side, 1 torch thread each)" in side
    assert smoke.readme_block({}) == f"{smoke.README_BEGIN}\n{smoke.README_END}"


def test_each_smoke_branch_holds_every_stage_of_its_task_and_the_branches_share_none() -> None:
    """On the real pipeline: the targets of a task's branch pull in exactly the stages named for that task,
    and what no branch reaches is what joins the tasks (summary)."""
    import networkx as nx
    from dvc.repo import Repo

    from .conftest import REPO, load_script

    smoke = load_script("scripts/smoke.py")
    with Repo(str(REPO)) as repo:
        graph = repo.index.graph  # edges: a stage → the stages whose outputs it reads
        by_name = {stage.addressing: stage for stage in graph}
        tasks = sorted({name.split("@")[1] for name in by_name if name.startswith("compare@")})
        reached: dict[str, set[str]] = {}
        for task, targets in smoke.branch_targets(tasks).items():
            upstream = set(targets)
            for target in targets:
                upstream |= {s.addressing for s in nx.descendants(graph, by_name[target])}
            reached[task] = upstream
    assert len(tasks) >= 2
    for task, upstream in reached.items():
        of_task = {n for n in by_name if "@" in n and n.split("@")[1].split("-")[0] == task}
        assert upstream == of_task
    assert set(by_name) - set().union(*reached.values()) == {"summary"}


def test_smoke_branches_run_side_by_side_and_a_failing_branch_fails_the_run(tmp_path: Path) -> None:
    import sys
    import time

    from .conftest import load_script

    smoke = load_script("scripts/smoke.py")

    def branch(name: str, code: int) -> list[str]:
        # a stage line, a pause, a second stage line: the branches' first stages must overlap in time
        script = (f"import time; print(\"Running stage 'a@{name}'\", flush=True); time.sleep(1.0); "
                  f"print(\"Running stage 'b@{name}'\", flush=True); raise SystemExit({code})")
        return [sys.executable, "-c", script]

    started = time.time()
    code, stages = smoke.run_branches({"x": branch("x", 0), "y": branch("y", 3)}, cwd=tmp_path, env=None)
    assert code == 3
    assert sorted((s["branch"], s["stage"]) for s in stages) == [("x", "a@x"), ("x", "b@x"), ("y", "a@y"),
                                                                 ("y", "b@y")]
    first = {s["branch"]: s for s in stages if s["stage"].startswith("a@")}
    # each branch's first stage began before the other's ended: they ran at the same time
    assert first["x"]["started"] < first["y"]["started"] + first["y"]["seconds"]
    assert first["y"]["started"] < first["x"]["started"] + first["x"]["seconds"]
    assert all(float(s["started"]) >= started for s in stages)
    ok, _ = smoke.run_branches({"x": branch("x", 0), "y": branch("y", 0)}, cwd=tmp_path, env=None)
    assert ok == 0


def test_a_branch_gets_its_share_of_the_cores_for_torch_threads() -> None:
    from .conftest import load_script

    smoke = load_script("scripts/smoke.py")
    assert smoke.branch_env({"A": "1"}, branches=2, cores=2) == {"A": "1", "OMP_NUM_THREADS": "1"}
    assert smoke.branch_env({}, branches=2, cores=8)["OMP_NUM_THREADS"] == "4"
    assert smoke.branch_env({}, branches=3, cores=2)["OMP_NUM_THREADS"] == "1"
