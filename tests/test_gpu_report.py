"""GPU-against-CPU pairing: twins match on (method, seed, budget) and LR, numbers come from the rows, bad
input stops with a message, and the README block is replaced between its markers only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from embedtune.gpu_report import GPU_BEGIN, GPU_END, GpuReportError, build, method_summary, pair_runs


def _rows(device: str, *, seconds: float, auroc_shift: float = 0.0, lr: float = 1e-4) -> pd.DataFrame:
    rows = []
    for method in ("full", "lora"):
        for seed, budget in ((0, 64), (1, 64), (0, 256)):
            rows.append({"task": "medical", "method": method, "seed": seed, "budget": budget, "lr": lr,
                         "lr_searched": lr, "auroc": 0.90 + 0.01 * seed + auroc_shift, "train_seconds": seconds,
                         "steps": 60, "best_step": 45 if device.startswith("CPU") or seed else 60,
                         "still_improving": False, "device": device})
    return pd.DataFrame(rows)


def test_twins_pair_on_method_seed_budget_with_time_ratio_and_metric_difference() -> None:
    pairs = pair_runs(_rows("CPU x86_64 ×2 threads", seconds=30.0),
                      _rows("NVIDIA H200", seconds=5.0, auroc_shift=0.002), metric="auroc")
    assert len(pairs) == 6
    assert pairs["speedup"].tolist() == pytest.approx([6.0] * 6)
    assert pairs["diff_points"].tolist() == pytest.approx([0.2] * 6)
    summary = method_summary(pairs).set_index("method")
    assert summary.loc["full", "cpu_minutes"] == pytest.approx(1.5)
    assert summary.loc["full", "gpu_minutes"] == pytest.approx(0.25)
    assert summary.loc["lora", "best_step_moved"] == 2  # seed 0 at 64 and at 256: best step 45 on CPU, 60 on GPU
    assert list(summary.index) == ["full", "lora"]


def test_a_run_without_a_cpu_twin_or_with_another_lr_is_refused() -> None:
    cpu = _rows("CPU", seconds=30.0)
    with pytest.raises(GpuReportError, match="without a CPU twin: full seed 0 at 64"):
        pair_runs(cpu[cpu["budget"] != 64], _rows("GPU", seconds=5.0), metric="auroc")
    with pytest.raises(GpuReportError, match="different learning rates"):
        pair_runs(cpu, _rows("GPU", seconds=5.0, lr=3e-4), metric="auroc")
    with pytest.raises(GpuReportError, match="lack the columns"):
        pair_runs(cpu.drop(columns=["train_seconds"]), _rows("GPU", seconds=5.0), metric="auroc")


def _tree(root: Path) -> None:
    for device, seconds, shift, folder in (("CPU x86_64 ×2 threads", 30.0, 0.0, root / "results" / "medical"),
                                           ("NVIDIA H200", 5.0, -0.004,
                                            root / "reports" / "gpu" / "medical" / "results" / "medical")):
        folder.mkdir(parents=True)
        frame = _rows(device, seconds=seconds, auroc_shift=shift)
        for method, group in frame.groupby("method"):
            group.to_csv(folder / f"{method}.csv", index=False)
    (root / "reports" / "gpu" / "medical" / "gpu_check.jsonl").write_text(
        '{"backbone": "pkg:efficientnet-lite0", "device": "NVIDIA H200", "batch": 64, "steps": 50, '
        '"samples_per_s": 4321.0, "peak_mem_mib": 2048.0, "achieved_tflops": 9.9, "fraction_of_bf16_peak": 0.01}\n')


def test_build_writes_report_figure_pairs_and_readme_block_from_the_rows(tmp_path: Path) -> None:
    _tree(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{GPU_BEGIN}\nold text\n{GPU_END}\noutro\n")
    build(task="medical", root=tmp_path, metric="auroc", readme=readme)
    png = tmp_path / "reports" / "figures" / "medical-gpu-vs-cpu.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    report = (tmp_path / "reports" / "gpu-medical.md").read_text()
    assert "NVIDIA H200" in report and "6.0× faster in all (the same for every method; median run 6.0×)" in report
    assert "-0.40 for every run" in report
    assert "4,321 samples/s" in report
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old text" not in text
    assert "6 fine-tuning runs" in text and "[`reports/gpu-medical.md`]" in text
    assert len(pd.read_csv(tmp_path / "reports" / "gpu" / "medical" / "pairs.csv")) == 6


def test_missing_markers_or_gpu_results_stop_with_a_message_and_leave_the_readme(tmp_path: Path) -> None:
    _tree(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(GpuReportError, match="GPU markers missing"):
        build(task="medical", root=tmp_path, metric="auroc", readme=readme)
    assert readme.read_text() == "no markers here\n"
    with pytest.raises(GpuReportError, match="no results of a tuned method"):
        build(task="legal", root=tmp_path, metric="macro_f1", readme=None)


def test_the_command_reads_the_task_metric_from_params_and_can_leave_the_readme(tmp_path: Path) -> None:
    from embedtune.gpu_report import main

    _tree(tmp_path)
    params = Path(__file__).resolve().parents[1] / "params.yaml"  # medical's main metric: auroc
    assert main(["--task", "medical", "--params", str(params), "--root", str(tmp_path), "--no-readme"]) == 0
    assert "auroc CPU" in (tmp_path / "reports" / "gpu-medical.md").read_text()
    assert main(["--task", "medical", "--params", str(params), "--root", str(tmp_path),
                 "--readme", str(tmp_path / "missing.md")]) == 2


def test_twins_that_planned_different_lengths_are_refused() -> None:
    cpu, gpu = _rows("CPU", seconds=30.0), _rows("GPU", seconds=5.0)
    cpu["planned_steps"], gpu["planned_steps"] = 60, 60
    assert len(pair_runs(cpu, gpu, metric="auroc")) == 6
    gpu.loc[gpu["budget"] == 256, "planned_steps"] = 160  # the archive copied a run with another schedule
    with pytest.raises(GpuReportError, match=r"planned different lengths \(full seed 0 at 256.*--cpu-commit"):
        pair_runs(cpu, gpu, metric="auroc")


def test_the_cpu_twins_can_come_from_an_earlier_commit(tmp_path: Path) -> None:
    """A later CPU run in the working tree does not replace the run the GPU archive copied."""
    import subprocess

    _tree(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "results"], check=True)
    subprocess.run([*git, "commit", "-qm", "cpu run"], check=True)
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    for csv in (tmp_path / "results" / "medical").glob("*.csv"):  # a later run: other seeds, no twins
        frame = pd.read_csv(csv)
        frame.assign(seed=frame["seed"] + 10).to_csv(csv, index=False)
    with pytest.raises(GpuReportError, match="without a CPU twin"):
        build(task="medical", root=tmp_path, metric="auroc", readme=None)
    readme = tmp_path / "README.md"
    readme.write_text(f"{GPU_BEGIN}\n{GPU_END}\n")
    assert len(build(task="medical", root=tmp_path, metric="auroc", readme=readme, cpu_commit=commit)) == 6
    assert f"the CPU run committed at `{commit}`" in readme.read_text()
    with pytest.raises(GpuReportError, match="nosuchcommit is not a commit of the repository"):
        build(task="medical", root=tmp_path, metric="auroc", readme=None, cpu_commit="nosuchcommit")
