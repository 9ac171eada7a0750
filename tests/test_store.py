"""The run store (store.py, runs.run_one): a stored run is reused on another host, retrained after an edit to
the training code, never trained under EMBEDTUNE_STORE=require, and audited by `verify runs`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from embedtune import precision, runs, store, verify
from embedtune.params import load_params
from embedtune.stages import embed, prepare, probe, shift


def _toy(project: dict, methods: list[str]) -> tuple:
    raw = project["raw"]
    raw["tasks"].pop("toyimage")
    raw["methods"] = methods
    raw["profiles"]["smoke"]["finetune"].update({"precision": "auto"})
    project["params_path"].write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(project["params_path"])
    root = project["root"]
    prepare.run(params, "toytext", root=root)
    shift.run(params, "toytext", root=root)
    embed.run(params, "toytext", root=root, progress=False)
    probe.run(params, "toytext", root=root)
    return params, root


def _no_training(*args, **kwargs):
    raise AssertionError("a stored run was trained again")


def _run(params, root, method: str = "lp_ft") -> dict:
    ctx = runs.stage_context(params, "toytext", method, root=root, progress=False)
    budget = int(sorted(ctx.subsets["subsets"]["0"], key=int)[0])
    return runs.run_one(ctx, seed=0, budget=budget, lr=params.scale.finetune.lr_grid[method][0], progress=False)


def test_a_stored_run_is_reused_on_another_host_and_retrained_after_a_training_code_edit(
        project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    params, root = _toy(project, ["lp_ft"])
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)  # this "host" resolves auto → fp32
    first = _run(params, root)
    assert not first["cached"] and first["ran"]["precision"] == "fp32"
    records = list((root / "runs" / "toytext" / "lp_ft" / "final").glob("*.json"))
    assert len(records) == 1 and records[0].with_suffix(".npz").is_file()
    assert not list((root / "checkpoints").rglob("state.pt"))  # resume state only while a run trains

    # "another host": auto resolves to bf16 there, and its probe head differs in the last bits
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    heads_path = root / "data" / "probe_heads" / "toytext" / "lp_ft.npz"
    with np.load(heads_path) as npz:
        heads = {k: np.nextafter(npz[k], np.inf) if k.startswith("w_") else npz[k] for k in npz.files}
    np.savez(heads_path, **heads)
    monkeypatch.setattr(runs, "_train_and_score", _no_training)
    again = _run(params, root)
    assert again["cached"] and again["row"] == first["row"]
    np.testing.assert_array_equal(again["arrays"]["probs"], first["arrays"]["probs"])
    # a probe setting changes the inputs digest the heads file carries: a different lp_ft run
    assert probe.probe_inputs_digest(params) == str(heads["inputs"])
    import dataclasses

    other = dataclasses.replace(params, profiles={**params.profiles, params.profile: dataclasses.replace(
        params.scale, probe=dataclasses.replace(params.scale.probe, max_iter=params.scale.probe.max_iter + 1))})
    assert probe.probe_inputs_digest(other) != str(heads["inputs"])
    monkeypatch.undo()

    # an edit to engine.py (in a copy of the package's training modules) changes the key: the run retrains
    pkg = Path(runs.__file__).parent
    copy_dir = tmp_path / "pkg"
    for name in runs.TRAINING_MODULES:
        (copy_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pkg / name, copy_dir / name)
    with open(copy_dir / "engine.py", "a") as fh:
        fh.write("\n# an edit\n")
    monkeypatch.setattr(runs, "__file__", str(copy_dir / "runs.py"))
    edited = _run(params, root)
    assert not edited["cached"] and edited["key"] != first["key"]
    assert len(list((root / "runs" / "toytext" / "lp_ft" / "final").glob("*.json"))) == 2


def test_require_mode_refuses_to_train_and_cold_mode_retrains(project, monkeypatch: pytest.MonkeyPatch) -> None:
    params, root = _toy(project, ["full"])
    monkeypatch.setenv("EMBEDTUNE_STORE", "require")
    with pytest.raises(store.MissingRunError, match="not in the run store.*EMBEDTUNE_STORE=require"):
        _run(params, root, "full")
    assert not (root / "runs" / "toytext" / "full" / "final").exists()
    monkeypatch.setenv("EMBEDTUNE_STORE", "use")
    first = _run(params, root, "full")
    monkeypatch.setenv("EMBEDTUNE_STORE", "require")
    assert _run(params, root, "full")["cached"]
    monkeypatch.setenv("EMBEDTUNE_STORE", "cold")
    cold = _run(params, root, "full")
    assert not cold["cached"] and cold["row"]["accuracy"] == first["row"]["accuracy"]  # same seed, same numbers
    monkeypatch.setenv("EMBEDTUNE_STORE", "warm")
    with pytest.raises(ValueError, match="EMBEDTUNE_STORE.*'use', 'cold', 'require'"):
        store.store_mode()


def test_verify_runs_passes_on_a_faithful_store_and_fails_on_a_tampered_one(project) -> None:
    params, root = _toy(project, ["full"])
    _run(params, root, "full")
    rows, ok = verify.verify_runs(params, root, n=3, seed=0, tolerance=0.02, same_host_tolerance=1e-6)
    assert ok and len(rows) == 1 and rows[0]["diff_main"] == 0.0 and rows[0]["diff_probs"] == 0.0
    path = next((root / "runs" / "toytext" / "full" / "final").glob("*.json"))
    record = yaml.safe_load(path.read_text())  # JSON is YAML
    record["row"]["accuracy"] = record["row"]["accuracy"] - 0.25
    store.write_json(path, record)
    code = verify.main(["runs", "--params", str(project["params_path"]), "--root", str(root), "--n", "1"])
    report = (root / "reports" / "verify-runs.md").read_text()
    assert code == 1 and "**no**" in report and "0.25" in report


def _read_mode_writes_nothing(root: Path, params_path: Path) -> None:
    """Every notebook opened by hand (its defaults: write=False) on a committed run: it shows the results
    and leaves `git status` clean (a fresh clone has no data/ cache: the pages read committed files only)."""
    import subprocess

    import papermill

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "committed run")
    shutil.rmtree(root / "data", ignore_errors=True)  # what a fresh clone lacks: the DVC-cached inputs
    git("checkout", "--", ".")  # tracked files under data/ (none expected) come back as a clone has them
    out = root.parent / "read-mode"
    out.mkdir(exist_ok=True)
    runs_of = {"01-linear-probe": {"task": "toytext"}, "02-finetune": {"task": "toytext", "method": "full"},
               "03-compare": {"task": "toytext"}, "04-summary": {}}
    for name, extra in runs_of.items():
        executed = out / f"{name}.ipynb"
        papermill.execute_notebook(str(root / "notebooks" / f"{name}.ipynb"), str(executed),
                                   parameters={"root": str(root), "params_path": str(params_path),
                                               "profile": "smoke", **extra},
                                   cwd=str(root / "notebooks"), progress_bar=False, kernel_name="python3")
        shown = executed.read_text()
        assert "image/png" in shown, f"{name}: read mode showed no figure"
    assert git("status", "--porcelain") == "", "read mode wrote into the committed run"


@pytest.mark.slow
def test_editing_a_display_cell_re_renders_from_the_store_and_trains_nothing(
        project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole tiny pipeline once; then a display cell of 03-compare edited, the resume state deleted, and
    every stage forced under EMBEDTUNE_STORE=require (a run missing from the store would fail the stage):
    every page renders again, the edit shows, and no record is written or rewritten. Then a probe setting
    changes: the probe, lp_ft's stages and the pages re-run, and `full`'s stages do not."""
    import json

    from .conftest import dvc_pipeline

    raw = project["raw"]
    raw["tasks"].pop("toyimage")
    raw["methods"] = ["full", "lp_ft"]
    project["params_path"].write_text(yaml.safe_dump(raw, sort_keys=False))
    root = project["root"]
    done = dvc_pipeline(root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = {p: p.stat().st_mtime_ns for p in (root / "runs").rglob("*") if p.is_file()}
    assert len([p for p in records if p.suffix == ".json"]) >= 4  # search + final runs
    _read_mode_writes_nothing(root, project["params_path"])
    notebook = root / "notebooks" / "03-compare.ipynb"
    nb = json.loads(notebook.read_text())
    nb["cells"][10]["source"] = ["print('edited display cell')\n"] + list(nb["cells"][10]["source"])
    # a reader's new plot: plt.show() in the kernel must reach the page (inline backend, not Agg)
    nb["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                        "source": ["import matplotlib.pyplot as plt\n", "plt.plot([0, 1], [1, 0])\n", "plt.show()\n"]})
    notebook.write_text(json.dumps(nb, indent=1))
    page = root / "reports" / "toytext" / "03-compare.html"
    images_before = page.read_text().count("data:image/png")
    shutil.rmtree(root / "checkpoints", ignore_errors=True)
    monkeypatch.setenv("EMBEDTUNE_STORE", "require")
    from embedtune import scratch

    again = scratch.repro(root, "--force")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Running stage 'finetune@toytext-full'" in again.stdout
    assert "edited display cell" in page.read_text()
    assert page.read_text().count("data:image/png") == images_before + 1
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").rglob("*") if p.is_file()} == records

    monkeypatch.setenv("EMBEDTUNE_STORE", "use")
    full_records = {p: p.stat().st_mtime_ns for p in (root / "runs" / "toytext" / "full").rglob("*") if p.is_file()}
    raw["profiles"]["smoke"]["probe"]["max_iter"] += 1
    project["params_path"].write_text(yaml.safe_dump(raw, sort_keys=False))
    probe_edit = scratch.repro(root)
    assert probe_edit.returncode == 0, probe_edit.stdout[-3000:] + probe_edit.stderr[-3000:]
    ran = set(re.findall(r"Running stage '([^']+)'", probe_edit.stdout))
    # a probe key re-runs the probe, lp_ft (its heads file changed) and the pages that read them; nothing else
    assert {"probe@toytext", "search@toytext-lp_ft", "finetune@toytext-lp_ft", "compare@toytext",
            "summary"} <= ran, sorted(ran)
    assert not ran & {"prepare@toytext", "shift@toytext", "embed@toytext", "search@toytext-full",
                      "finetune@toytext-full"}, sorted(ran)
    assert {p: p.stat().st_mtime_ns for p in (root / "runs" / "toytext" / "full").rglob("*")
            if p.is_file()} == full_records


def test_the_probe_stage_reads_its_fits_back_from_the_store_and_fits_nothing(
        project, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second probe stage (another clone, another host, an edited page) reads every fit from its record:
    identical outputs, no fit, no backbone pass; under require a missing fit is an error."""
    from embedtune import probe_fits
    from embedtune.stages import probe as probe_stage

    params, root = _toy(project, ["full"])
    results = root / "results" / "toytext"
    first = {p.relative_to(results): p.read_bytes() for p in results.rglob("*") if p.is_file()}
    heads = (root / "data" / "probe_heads" / "toytext" / "lp_ft.npz").read_bytes()
    records = sorted((root / "runs" / "toytext" / "probe_fits").glob("*.json"))
    assert len(records) == 4  # 2 budgets × 2 seeds, one record each holding probe, layer probe and classic

    def no_fit(*args, **kwargs):
        raise AssertionError("a stored fit was fitted again")

    monkeypatch.setattr(probe_stage, "fit_one", no_fit)
    monkeypatch.setattr(probe_stage, "_features", no_fit)  # no embeddings loaded, no backbone pass
    probe_stage.run(params, "toytext", root=root, progress=False)
    again = {p.relative_to(results): p.read_bytes() for p in results.rglob("*") if p.is_file()}
    assert again == first
    assert (root / "data" / "probe_heads" / "toytext" / "lp_ft.npz").read_bytes() == heads

    records[0].unlink()
    monkeypatch.setenv("EMBEDTUNE_STORE", "require")
    with pytest.raises(store.MissingRunError, match="probe fits"):
        probe_stage.run(params, "toytext", root=root, progress=False)
    monkeypatch.setenv("EMBEDTUNE_STORE", "use")
    monkeypatch.undo()
    assert probe_fits.FIT_SOURCES[0] == "probe_fits.py"


def test_a_record_is_deflated_and_compact_deflates_old_ones_without_changing_a_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(8), size=300)  # float64, rows × classes, like a tuned run's test probabilities
    arrays = {"probs": probs, "thresholds": np.full(8, 0.5)}
    written = store.RunStore(tmp_path, "t", "full").write("final", "s0_b64_lr0.001_abc", {"key": "k"},
                                                          arrays=arrays, shift_arrays={"blur@1": probs[:10]})
    npz = written.with_suffix(".npz")
    assert store.deflated(npz)
    back = store.RunStore(tmp_path, "t", "full").read(written)
    assert back["arrays"]["probs"].dtype == np.float64 and np.array_equal(back["arrays"]["probs"], probs)

    # a record written before deflation (the probe fits' writer still writes plain npz)
    old = tmp_path / "runs" / "t" / "probe_fits" / "s0_b64_def.npz"
    old.parent.mkdir(parents=True)
    np.savez(old, probe=probs.astype(np.float32), labels=np.arange(300))
    (old.with_suffix(".json")).write_text('{"key": "k2"}')
    size = old.stat().st_size
    files, before, after = store.compact(tmp_path)
    assert (files, before) == (1, size) and after < 0.8 * size and store.deflated(old)
    with np.load(old) as again:
        assert again["probe"].dtype == np.float32 and np.array_equal(again["probe"], probs.astype(np.float32))
        assert np.array_equal(again["labels"], np.arange(300))
    assert old.with_suffix(".json").read_text() == '{"key": "k2"}'
    assert store.compact(tmp_path) == (0, 0, 0)  # nothing left to deflate


def test_the_run_time_line_says_when_where_and_from_which_commits_the_store_was_made() -> None:
    from embedtune.findings import run_time_sentences

    def record(commit: str, finished: str, boot: str) -> dict:
        return {"ran": {"host": "vm", "device": "CPU x86_64 ×2 threads", "sitting": boot, "commit": commit,
                        "finished_utc": finished}, "row": {"train_seconds": 1800.0}}

    held = store.store_summary([record("aaa", "2026-12-05T18:11:53Z", "b1"), record("bbb", "2026-12-06T06:08:30Z", "b1"),
                                record("bbb", "2026-12-06T01:00:00Z", "b1")])
    assert held == {"runs": 3, "hosts": 1, "sittings": 1, "commits": 2, "first_utc": "2026-12-05T18:11:53Z",
                    "last_utc": "2026-12-06T06:08:30Z", "train_seconds": 5400.0}
    lines = run_time_sentences({"profile": "cpu", "commit": "ccc", "dirty": False, "cores": 2, "started": "x",
                                "wall_seconds": 600.0, "complete": True, "stages": [],
                                "store": {**held, "bytes": 2_000_000}})
    (line,) = [s for s in lines if s.startswith("The run store")]
    assert ("holds 3 finished tuned runs made from 2026-12-05 18:11 to 2026-12-06 06:08 UTC at 2 commits of the "
            "code, on 1 host in at least 1 sitting (machine boots): 1.5 h of training") in line
