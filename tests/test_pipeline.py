"""End-to-end: notebooks through papermill on the tiny project, CLI errors, report rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from embedtune.cli import main as cli_main
from embedtune.notebook import render as run_notebook
from embedtune.registry import METHOD_ORDER

from .conftest import visible_html

REPO = Path(__file__).resolve().parents[1]


def _run_probe(project, root: Path, task: str) -> Path:
    """The probe page's notebook after the stages dvc.yaml runs before it (prepare, shift, embed, probe)."""
    from embedtune.params import load_params
    from embedtune.stages import embed, prepare, probe, shift

    params = load_params(project["params_path"])
    prepare.run(params, task, root=root)
    shift.run(params, task, root=root)
    embed.run(params, task, root=root, progress=False)
    probe.run(params, task, root=root)
    return run_notebook("01-linear-probe", params_path=project["params_path"], root=root, task=task)


@pytest.mark.slow
def test_probe_notebook_end_to_end_and_deterministic(project, tmp_path) -> None:
    html = _run_probe(project, project["root"], "toytext")
    assert html.is_file() and "Learning curve" in html.read_text()
    first = pd.read_csv(project["root"] / "results" / "toytext" / "probe.csv")
    # chance is ~0.5 on the toy set; a random tiny encoder needs the larger budget to separate it
    assert (first.loc[first["budget"] == 48, "accuracy"] > 0.7).all()
    assert first["accuracy"].mean() > 0.6
    assert set(first["budget"]) == {16, 48} and set(first["seed"]) == {0, 1}
    assert (first["trainable_params"] == 2 * 32 + 2).all()
    meta = json.loads((project["root"] / "data" / "embeddings" / "toytext" / "meta.json").read_text())
    # rerun into a fresh root: identical numbers
    _run_probe(project, tmp_path / "again", "toytext")
    second = pd.read_csv(tmp_path / "again" / "results" / "toytext" / "probe.csv")
    cols = ["accuracy", "macro_f1", "auroc", "c"]
    pd.testing.assert_frame_equal(first[cols], second[cols])
    # the encoder's weights are untouched by the probe: the cache key (weights md5) still matches the saved model
    from embedtune.backbones import load_backbone

    enc = load_backbone(meta["key"]["model_id"], kind="text", max_length=16)
    assert enc.weights_hash() == meta["key"]["weights_md5"]


@pytest.mark.slow
def test_finetune_compare_summary_notebooks(project) -> None:
    root = project["root"]
    for task in ("toytext", "toyimage"):
        _run_probe(project, root, task)
        for method in ("full", "lp_ft", "lora", "partial"):
            from embedtune.params import load_params
            from embedtune.stages import search

            search.run(load_params(project["params_path"]), task, method, root=root, progress=False)
            run_notebook("02-finetune", params_path=project["params_path"], root=root, task=task, method=method)
        run_notebook("03-compare", params_path=project["params_path"], root=root, task=task)
    raw = project["raw"]
    html = run_notebook("04-summary", params_path=project["params_path"], root=root)
    assert "decision guide" in html.read_text().lower()
    assert "NaN" not in visible_html(html)
    # what a reader opens: no code cells, no path of this machine (the project root, the venv, /tmp)
    for page in (root / "reports").rglob("*.html"):
        text = visible_html(page)
        assert 'class="highlight hl-ipython3"' not in text, f"{page.name}: code cell rendered"
        assert "0%|" not in text, f"{page.name}: progress bars rendered"
        for path in (str(root), "site-packages", "/tmp/"):
            assert path not in text, f"{page.name}: machine path {path!r}"
    lora = pd.read_csv(root / "results" / "toytext" / "lora.csv")
    full = pd.read_csv(root / "results" / "toytext" / "full.csv")
    partial = pd.read_csv(root / "results" / "toytext" / "partial.csv")
    # FLOPs and how each run ended are recorded per run (issue: cost in units that travel)
    for frame in (full, partial, lora):
        assert (frame["train_flops"] > 0).all() and (frame["infer_flops_per_row"] > 0).all()
        assert set(frame["stop_reason"]) <= {"patience", "round cap"} and (frame["epochs_seen"] > 0).all()
    assert (partial["infer_flops_per_row"] > partial["train_flops"] / partial["train_flops"].max()).all()
    decision = pd.read_csv(root / "results" / "toyimage" / "decision.csv")
    assert {"pick", "best", "runner_up", "expected_loss_points", "detectable_points"} <= set(decision.columns)
    # LoRA adapts every block projection: on this 2-layer, 32-wide model that is still well below full
    assert (lora["trainable_params"] < 0.5 * full["trainable_params"]).all()
    assert (partial["trainable_params"] < full["trainable_params"]).all()
    for col in ("train_seconds", "peak_mem_mib", "infer_ms_per_1000", "device", "n_val", "steps", "best_step",
                "still_improving", "lr"):
        assert full[col].notna().all() and partial[col].notna().all()
    probe = pd.read_csv(root / "results" / "toytext" / "probe.csv")
    assert set(full["n_val"]) == set(partial["n_val"]) == set(probe["n_val"])  # one selection set
    hparams = pd.read_csv(root / "results" / "toytext" / "hparams.csv")
    assert set(hparams["method"]) == set(METHOD_ORDER)
    assert (hparams.groupby("method")["chosen"].sum() == 1).all()
    shift = pd.read_csv(root / "results" / "toyimage" / "shift_drops.csv")
    assert set(shift["method"]) == set(METHOD_ORDER)
    assert (root / "reports" / "figures" / "toyimage-shift.png").is_file()
    compare_html = (root / "reports" / "toyimage" / "03-compare.html").read_text()
    assert "drop under shift" in compare_html.lower()
    assert str(root.resolve()) not in compare_html  # papermill gets relative paths: no machine path in a report
    headline = json.loads((root / "metrics" / "toyimage" / "headline.json").read_text())
    assert set(headline["methods"]) == set(METHOD_ORDER)
    assert raw["tasks"]["toyimage"]["main_metric"] == headline["metric"]


def _cli(*args: str, cwd: Path, module: str = "embedtune.cli") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize(("module", "args", "message"), [
    ("embedtune.stages.prepare", ["--task", "finance"], "unknown task 'finance'"),
    ("embedtune.notebook", ["02-finetune", "--task", "toytext", "--method", "prompt"], "method: bad value 'prompt'"),
    ("embedtune.cli", ["set-profile", "tpu"], "profile: bad value 'tpu'"),
])
def test_cli_bad_input_exits_with_one_clear_message_and_writes_nothing(project, module, args, message) -> None:
    root = project["root"]
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    if module == "embedtune.cli":
        args = ["--params", str(project["params_path"]), "--root", str(root), *args]
    else:
        args = [*args, "--params", str(project["params_path"]), "--root", str(root)]
    proc = _cli(*args, cwd=root, module=module)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_cli_budget_larger_than_train_split(project) -> None:
    raw = yaml.safe_load(project["params_path"].read_text())
    raw["profiles"]["smoke"]["budgets"]["sizes"] = [16, 100000]
    project["params_path"].write_text(yaml.safe_dump(raw))
    proc = _cli("--task", "toytext", "--params", str(project["params_path"]), "--root", str(project["root"]),
                cwd=project["root"], module="embedtune.stages.prepare")
    assert proc.returncode == 2 and "larger than the train split" in proc.stderr
    assert not (project["root"] / "data" / "prepared" / "toytext" / "subsets.json").exists()


def test_notebook_parameter_of_wrong_type(project) -> None:
    from embedtune.notebook import load as notebook_params
    from embedtune.params import ParamsError

    with pytest.raises(ParamsError, match="notebook parameter profile: bad value 3"):
        notebook_params(params_path=str(project["params_path"]), profile=3)  # type: ignore[arg-type]


def test_set_profile_keeps_comments(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    assert cli_main(["--params", str(path), "set-profile", "gpu"]) == 0
    text = path.read_text()
    assert "profile: gpu" in text and "# Single source of truth" in text


def test_notebooks_are_thin_and_stripped() -> None:
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        cells = nb["cells"]
        assert any("parameters" in c["metadata"].get("tags", []) for c in cells), path
        for cell in cells:
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, path
                assert not any(line.lstrip().startswith(("def ", "class ")) for line in "".join(cell["source"]).splitlines())


def test_dvc_stages_declare_the_params_their_code_reads() -> None:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stages = dvc["stages"]
    assert "profiles.${profile}.probe" in stages["probe"]["do"]["params"]
    assert "profiles.${profile}.probe" not in stages["embed"]["do"]["params"]  # a probe setting never re-embeds
    assert "profiles.${profile}.finetune" not in stages["embed"]["do"]["params"]
    assert "profiles.${profile}.embed" in stages["embed"]["do"]["params"]
    assert np.all(["profile" in s.get("params", s.get("do", {}).get("params", [])) for s in stages.values()])


@pytest.mark.slow
def test_a_failing_notebook_names_its_cell_shows_the_traceback_and_keeps_the_executed_notebook(project) -> None:
    """03-compare on a task with no results: the stage's first cell fails; the error names the cell, shows
    its first lines and the traceback, and the executed notebook stays beside the page as .failed.ipynb."""
    from embedtune.notebook import render

    root = project["root"]
    with pytest.raises(RuntimeError) as failure:
        render("03-compare", params_path=project["params_path"], root=root, task="toytext")
    message = str(failure.value)
    assert "notebook 03-compare failed in cell" in message and "execution count" in message
    assert "the cell begins:" in message and "traceback:" in message and "\x1b[" not in message
    assert "FileNotFoundError" in message
    kept = root / "reports" / "toytext" / "03-compare.failed.ipynb"
    assert kept.is_file() and str(kept) in message
    assert not (root / "reports" / "toytext" / "03-compare.html").exists()
