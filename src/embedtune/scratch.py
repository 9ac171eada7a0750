"""Scratch DVC projects: the real pipeline (this repository's dvc.yaml, src/, notebooks/) run somewhere the
committed run cannot be touched.

Used by `make smoke` (scripts/smoke.py), the pipeline benchmark (benchmarks/run_all.py) and the slow tests
(tests/conftest.dvc_pipeline). No DVC stage imports this module.

Protocol: a scratch project is a folder holding the pipeline's code and a params.yaml of its own, initialised
as a DVC project without git (``no_scm``), and run with the interpreter's own `dvc` and the copy's own src/
first on PYTHONPATH, so what runs is the copied code, not an installed one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# what a scratch copy leaves out: the committed run's outputs and its lock (it belongs to the cpu profile)
RUN_OUTPUTS = ("results/", "metrics/", "reports/", "runs/")
DVC_CONFIG = "[core]\n    no_scm = true\n    autostage = false\n    analytics = false\n"


def dvc_executable() -> str:
    """The `dvc` installed beside this interpreter (the venv's), whatever PATH says."""
    return str(Path(sys.executable).parent / "dvc")


def dvc_env(work: Path) -> dict[str, str]:
    """Environment for a scratch run: the interpreter's folder first on PATH (stages call `python`), the copy's
    src/ first on PYTHONPATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "PYTHONPATH": str(work / "src")}


def copy_tracked(work: Path, *, repo: Path = REPO) -> list[str]:
    """Copy the repository's tracked and untracked-but-not-ignored files into ``work``, less the committed run
    (results/, metrics/, reports/, dvc.lock). Returns the copied names (relative paths)."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                             capture_output=True, check=True).stdout.decode().split("\0")
    names = [n for n in listing if n and not n.startswith(RUN_OUTPUTS) and n != "dvc.lock" and (repo / n).is_file()]
    for name in names:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, work / name)
    return names


def copy_pipeline_code(work: Path, *, repo: Path = REPO) -> None:
    """Put this repository's dvc.yaml, src/ and notebooks/ into a project that has its own params.yaml (folders
    already there are kept, so a test can plant a variant)."""
    shutil.copy(repo / "dvc.yaml", work / "dvc.yaml")
    for folder in ("src", "notebooks"):
        if not (work / folder).exists():
            shutil.copytree(repo / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))


def init_dvc(work: Path) -> None:
    """Make ``work`` a DVC project without git (idempotent): `dvc init --no-scm` once, then a fixed config."""
    if not (work / ".dvc").is_dir():
        subprocess.run([dvc_executable(), "init", "--no-scm", "-f"], cwd=work, check=True, capture_output=True,
                       env=dvc_env(work))
    (work / ".dvc" / "config").write_text(DVC_CONFIG)


def repro(work: Path, *args: str, capture: bool = True) -> subprocess.CompletedProcess:
    """`dvc repro [args]` in the scratch project ``work`` (initialised first when it is not yet a project)."""
    init_dvc(work)
    return subprocess.run([dvc_executable(), "repro", *args], cwd=work, capture_output=capture, text=True,
                          env=dvc_env(work))
