"""Pipeline integrity: each DVC stage declares exactly the params keys its code reads.

The stage functions run on the tiny project with a recording proxy around the validated params; every
attribute path read (``profiles.smoke.finetune.epochs``, ``tasks.toytext.main_metric``, ...) must be
covered by a key the stage declares in ``dvc.yaml``, and every declared key must be read.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from embedtune.params import load_params

REPO = Path(__file__).resolve().parents[1]


class Recorder:
    """Wraps a params object; records the dotted path of every leaf value read through it."""

    def __init__(self, obj: Any, path: str, log: set[str]) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_log", log)

    def _wrap(self, value: Any, path: str) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            # a Recorder that `dataclasses.asdict` accepts (it then reads, and logs, every field)
            recorded = type("RecordedDataclass", (Recorder,), {"__dataclass_fields__": value.__dataclass_fields__})
            return recorded(value, path, self._log)
        self._log.add(path)
        return value

    def __getattr__(self, name: str) -> Any:
        obj, path = self._obj, self._path
        prefix = f"{path}." if path else ""
        if name == "scale":
            return self._wrap(obj.scale, f"profiles.{obj.profile}")
        if name == "task":
            return lambda task: self._wrap(obj.task(task), f"tasks.{task}")
        if name == "backbone_for":
            def backbone_for(task: str) -> str:
                self._log.add(f"profiles.{obj.profile}.embed")
                self._log.add(f"tasks.{task}.source")  # text or image backbone
                return obj.backbone_for(task)
            return backbone_for
        return self._wrap(getattr(obj, name), prefix + name)


def _declared(stage: dict[str, Any], *, profile: str, item: Any) -> set[str]:
    keys = set()
    for key in stage.get("params", []):
        key = key.replace("${profile}", profile)
        if isinstance(item, dict):
            for k, v in item.items():
                key = key.replace("${item." + k + "}", v)
        else:  # foreach over params.yaml's tasks: ${key} is the task name
            key = key.replace("${item}", str(item)).replace("${key}", str(item))
        keys.add(key)
    return keys


def _covered(read: str, declared: set[str]) -> bool:
    return any(read == d or read.startswith(d + ".") for d in declared)


def _check(read: set[str], declared: set[str], stage: str) -> None:
    read = {r for r in read if r != "profile"} | {"profile"}  # every stage reads the profile choice
    uncovered = sorted(r for r in read if not _covered(r, declared))
    assert not uncovered, f"{stage} reads params it does not declare in dvc.yaml: {uncovered}"
    unused = sorted(d for d in declared if not any(r == d or r.startswith(d + ".") or d.startswith(r + ".")
                                                   for r in read))
    assert not unused, f"{stage} declares params its code never reads: {unused}"


@pytest.mark.slow
def test_each_stage_declares_exactly_the_params_it_reads(project) -> None:
    from embedtune.stages import compare, embed, finetune, prepare, probe, search, shift

    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = load_params(project["params_path"])
    root = project["root"]
    task = "toyimage"
    runs = {
        "prepare": lambda p: prepare.run(p, task, root=root),
        "shift": lambda p: shift.run(p, task, root=root),
        "embed": lambda p: embed.run(p, task, root=root, progress=False),
        "probe": lambda p: probe.run(p, task, root=root),
        "search": lambda p: search.run(p, task, "lp_ft", root=root, progress=False),
        "finetune": lambda p: finetune.run(p, task, "lp_ft", root=root, progress=False),
        "compare": lambda p: compare.run(p, task, root=root, n_boot=20),
    }
    for name, run in runs.items():
        log: set[str] = set()
        if name == "compare":
            for method in ("full", "lora", "partial"):
                search.run(params, task, method, root=root, progress=False)
                finetune.run(params, task, method, root=root, progress=False)
        run(Recorder(params, "", log))
        stage = dvc[name]
        spec = stage.get("do", stage)
        item = {"task": task, "method": "lp_ft"} if name in ("finetune", "search") else task
        declared = _declared(spec, profile=params.profile, item=item)
        if name in ("prepare", "shift"):
            declared = {d for d in declared if d != "data_root"} | {"data_root"}
        _check(log, declared, name)


def _stages_ran(output: str) -> list[str]:
    return sorted(set(re.findall(r"Running stage '([^']+)'", output)))


@pytest.mark.slow
def test_dvc_reruns_exactly_the_dependent_stages_and_a_second_repro_is_a_noop(project) -> None:
    """The real stage definitions (prepare → embed → probe, for the tiny text task) under DVC: a first
    `dvc repro` runs them, a second runs nothing, a probe key re-runs only the probe, an embed key re-runs the
    embedding (and what reads it) but never the data preparation."""
    work = project["root"]
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    subset = {}
    for name in ("prepare", "shift", "embed", "probe"):
        subset[name] = {**stages[name], "foreach": {"toytext": {}}}  # the tiny project's one text task
    (work / "dvc.yaml").write_text(yaml.safe_dump({"stages": subset}, sort_keys=False))
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "notebooks", work / "notebooks")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    dvc = str(Path(sys.executable).parent / "dvc")

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([dvc, *args], cwd=work, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def edit(section: str, key: str) -> None:
        raw = yaml.safe_load(project["params_path"].read_text())
        raw["profiles"]["smoke"][section][key] += 1
        project["params_path"].write_text(yaml.safe_dump(raw, sort_keys=False))

    run("init", "--no-scm")
    assert _stages_ran(run("repro").stdout) == ["embed@toytext", "prepare@toytext", "probe@toytext", "shift@toytext"]
    assert _stages_ran(run("repro").stdout) == []
    edit("probe", "max_iter")
    assert _stages_ran(run("repro", "--dry").stdout) == ["probe@toytext"]
    edit("embed", "batch_size")
    ran = _stages_ran(run("repro").stdout)
    assert "prepare@toytext" not in ran and "shift@toytext" not in ran and {"embed@toytext", "probe@toytext"} <= set(ran)
    assert _stages_ran(run("repro").stdout) == []
