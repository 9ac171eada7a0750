"""The engine under DDP: 2 CPU processes (gloo) launched by ``accelerate launch`` with the repository's config.

What is checked, against the same run in one process with the same global batch (8):
- `full` and `lora` reach the same weights (validation probabilities within 1e-4, losses within 1e-4) with
  the same number of optimizer steps: each rank takes half of every micro-batch and DDP averages the
  gradients, so the learning-rate schedule counts the same optimizer steps as one process;
- uneven shards (a pass whose last micro-batch has an odd number of items) finish instead of hanging,
  with the same steps; the result then differs only by the shard weighting of that batch (within 0.05);
- only rank 0 writes files;
- a run interrupted after a round's checkpoint resumes under 2 processes and ends where the uninterrupted
  2-process run ends;
- a rank that fails stops the other with the error, instead of a hang.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "ddp_worker.py"
CONFIG = REPO / "configs" / "accelerate" / "cpu-2proc.yaml"


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def run_worker(out: Path, model_dir: Path, method: str, n_train: int, *, processes: int, extra: list[str] = (),
               timeout: int = 240) -> subprocess.CompletedProcess:
    args = [str(WORKER), str(model_dir), str(out), method, str(n_train), *extra]
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG),
               "--num_processes", str(processes), "--main_process_port", str(29500 + os.getpid() % 1000), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=REPO)


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("method", ["full", "lora"])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path, tiny_text_model_dir: Path,
                                                            method: str) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_worker(one, tiny_text_model_dir, method, 32, processes=1).returncode == 0
    done = run_worker(two, tiny_text_model_dir, method, 32, processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _result(one), _result(two)
    assert b["world_size"] == 2 and a["steps"] == b["steps"] == 12
    np.testing.assert_allclose(a["val_loss"], b["val_loss"], atol=1e-4)
    np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-4)
    assert sorted(p.name for p in two.glob("*.json")) == ["result.json", "written-by-rank-0.json"]


def test_uneven_shards_finish_with_the_same_steps(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_worker(one, tiny_text_model_dir, "full", 29, processes=1).returncode == 0  # last batch of a pass: 5
    done = run_worker(two, tiny_text_model_dir, "full", 29, processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _result(one), _result(two)
    assert a["steps"] == b["steps"]
    np.testing.assert_allclose(a["val_loss"], b["val_loss"], atol=0.05)


def test_resume_under_two_processes_matches_uninterrupted(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert run_worker(whole, tiny_text_model_dir, "lora", 32, processes=2).returncode == 0
    killed = run_worker(resumed, tiny_text_model_dir, "lora", 32, processes=2, extra=["--interrupt-round", "1"])
    assert killed.returncode != 0 and not (resumed / "result.json").exists()
    assert (resumed / "checkpoint" / "state.pt").is_file()
    done = run_worker(resumed, tiny_text_model_dir, "lora", 32, processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _result(whole), _result(resumed)
    assert b["resumed_from"] == 0 and a["steps"] == b["steps"]
    np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-6)


def test_a_failing_rank_stops_the_other_with_its_error(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    failed = run_worker(tmp_path / "out", tiny_text_model_dir, "full", 32, processes=2, extra=["--fail-rank", "1"],
                        timeout=180)  # a hang would hit the timeout and fail the test
    assert failed.returncode != 0
    assert "rank 1 failed on purpose" in failed.stdout + failed.stderr
    assert not (tmp_path / "out" / "result.json").exists()


def test_finetune_command_under_two_processes_writes_the_stage_outputs_once(project, tmp_path: Path) -> None:
    """The documented scale-out command on the tiny project: `accelerate launch ... -m embedtune.cli finetune`.
    Rank 0 alone writes the method's results; every run makes the steps a one-process run makes."""
    import shutil

    import pandas as pd

    from embedtune.cli import main as cli_main

    root, params = project["root"], project["params_path"]
    common = ["--params", str(params), "--root", str(root)]
    for command in ("prepare", "shift", "embed"):
        assert cli_main([*common, command, "--task", "toytext"]) == 0
    single = tmp_path / "single"
    shutil.copytree(root / "data", single / "data")
    assert cli_main(["--params", str(params), "--root", str(single), "finetune", "--task", "toytext",
                     "--method", "lora"]) == 0
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG), "--num_processes", "2",
           "--main_process_port", str(29500 + (os.getpid() + 7) % 1000), "-m", "embedtune.cli", *common, "finetune",
           "--task", "toytext", "--method", "lora"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env(), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    two = pd.read_csv(root / "results" / "toytext" / "lora.csv")
    one = pd.read_csv(single / "results" / "toytext" / "lora.csv")
    assert len(two) == len(one) > 0
    # every run plans the same rounds of optimizer steps as one process (a run may stop at another round:
    # the tiny model's dropout draws differ between one batch and two half-batches)
    per_round = (two["steps"] / two["evaluations"]).tolist()
    assert per_round == (one["steps"] / one["evaluations"]).tolist()
    leftovers = [p for p in (root / "results").rglob("*") if p.name.startswith(".")]
    assert not leftovers, leftovers  # no temporary files from a second writer
