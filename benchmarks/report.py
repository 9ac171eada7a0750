"""reports/benchmarks.md from reports/benchmarks.json: pure rendering, no timing.

Every section either shows its numbers with the verdict they give, or says why it did not run and gives no
verdict. The header names the commit and date of the benchmark run; the pipeline's run time and the GPU
results are quoted from their own generated files (reports/run-time.json, reports/gpu/<task>/pairs.csv),
never typed here. `python benchmarks/report.py` re-renders from the JSON.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"embed": 1.3, "finetune": 1.2, "probe": 3.0, "many_class": 1.0, "noop_seconds": 10.0}


def _fmt(s: dict[str, float]) -> str:
    return f"{s['per_s']:.3g}/s (median {s['median_s']:.2g} s, min–max {s['min_s']:.2g}–{s['max_s']:.2g} s)"


def verdict(value: float | None, target: float, *, higher_is_better: bool = True) -> str:
    """"met" / "missed" with the number and target; no verdict without a number."""
    if value is None:
        return "no verdict (not measured)"
    ok = value >= target if higher_is_better else value < target
    return f"{'met' if ok else 'missed'} ({value:.3g} against {'≥' if higher_is_better else '<'} {target:g})"


def _skipped(section: dict[str, Any] | None) -> str | None:
    if not section:
        return "not run in this benchmark run"
    return section.get("skipped")


def embed_section(e: dict[str, Any] | None) -> list[str]:
    lines = ["## 1. Embedding extraction (all-MiniLM-L6-v2, batch 64, max 128 tokens)", ""]
    why = _skipped(e)
    if why:
        return lines + [f"Not measured: {why}. No verdict.", ""]
    lines += [f"{e['n']} Rotten Tomatoes snippets.", "", "| tool | precision | throughput |", "| --- | --- | --- |",
              f"| embedtune `encode` | fp32 | {_fmt(e['ours'])} |",
              f"| sentence-transformers `encode` | fp32 | {_fmt(e['sentence_transformers'])} |"]
    if "ours_bf16" in e:
        lines.append(f"| embedtune `encode` | bf16 autocast | {_fmt(e['ours_bf16'])} |")
    lines += ["", f"Ours / sentence-transformers (fp32): {e['ratio']:.2f}×, target ≥ {TARGETS['embed']}×: "
              f"{verdict(e['ratio'], TARGETS['embed'])}. Agreement: cosine min {e['cosine_min']:.4g}.",
              f"Padding ceiling (time ∝ processed tokens, same kernels): {e['padding_ceiling']:.2f}×."]
    if "ours_bf16" in e:
        lines.append(f"bf16 autocast / fp32 (ours): {e['bf16_speedup']:.2f}×; cosine between the two embeddings, "
                     f"min {e['bf16_cosine_min']:.4g}.")
    return lines + [""]


def finetune_section(f: dict[str, Any] | None) -> list[str]:
    lines = ["## 2. Fine-tuning throughput (all-MiniLM-L6-v2 + linear head)", ""]
    why = _skipped(f)
    if why:
        return lines + [f"Not measured: {why}. No verdict.", ""]
    lines += [f"Batch {f['batch']}, {f['steps']} steps, the same real sentiment rows for every row of the table.", "",
              "| tool | precision | samples/s | mean train loss |", "| --- | --- | --- | --- |",
              f"| embedtune `train` (length grouping {f['length_grouping']}) | fp32 | {_fmt(f['ours'])} | "
              f"{f['loss_ours']:.4f} |"]
    if "ours_bf16" in f:
        lines.append(f"| embedtune `train` (length grouping {f['length_grouping']}) | bf16 autocast | "
                     f"{_fmt(f['ours_bf16'])} | {f['loss_ours_bf16']:.4f} |")
    lines.append(f"| HF `Trainer` | fp32 | {_fmt(f['trainer'])} | {f['loss_trainer']:.4f} |")
    if "trainer_bf16" in f:
        lines.append(f"| HF `Trainer` | bf16 autocast | {_fmt(f['trainer_bf16'])} | {f['loss_trainer_bf16']:.4f} |")
    lines += ["", f"Ours / Trainer (fp32): {f['ratio']:.2f}×, target ≥ {TARGETS['finetune']}×: "
              f"{verdict(f['ratio'], TARGETS['finetune'])}."]
    if "ours_bf16" in f:
        lines.append(f"Ours bf16 / ours fp32: {f['bf16_speedup']:.2f}× the samples/s; loss after {f['steps']} steps "
                     f"{f['loss_ours_bf16']:.4f} vs {f['loss_ours']:.4f}.")
    if "final_metric" in f:
        m = f["final_metric"]
        lines.append(f"Final metric, one task ({m['task']}, {m['budget']} labels, seed 0, `{m['method']}` at the "
                     f"profile's schedule): {m['metric']} {m['fp32']:.3f} in fp32, {m['bf16']:.3f} under bf16 "
                     f"autocast ({m['fp32_seconds']:.0f} s vs {m['bf16_seconds']:.0f} s).")
    if "matmul" in f:
        mm = f["matmul"]
        bf16_peak = f", {mm['bf16_gflops']:.3g} GFLOP/s bf16" if "bf16_gflops" in mm else ""
        lines.append(f"Matmul peak of this host (a {mm['shape']} matmul, the shape of a MiniLM MLP step on one "
                     f"batch): {mm['fp32_gflops']:.3g} GFLOP/s fp32{bf16_peak}. FLOPs per "
                     "training step (FlopCounterMode, on that batch) ÷ our measured step time (which also holds "
                     "the optimizer, data preparation and one small validation pass), against the peak of the "
                     f"same precision, aim ≥ 60%: fp32 {verdict(mm['ours_fp32_fraction'], 0.6)}; bf16 "
                     f"{verdict(mm.get('ours_bf16_fraction'), 0.6)}.")
    return lines + [""]


def probe_section(p: dict[str, Any] | None, max_budget: Any) -> list[str]:
    lines = [f"## 3. Probe fitting (budget × seed × C sweep on cached embeddings, budgets ≤ {max_budget})", ""]
    why = _skipped(p)
    if why or not p.get("tasks"):
        return lines + [f"Not measured: {why or 'no single-label task had cached embeddings'}. No verdict.", ""]
    lines += [f"Inputs: {p['inputs']}.", "",
              "| task | fits | embedtune | scikit-learn | ratio | mean test metric ours / sklearn | mean Δ (points) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for task, r in p["tasks"].items():
        lines.append(f"| {task} | {r['fits']} | {r['ours']['median_s']:.2g} s | {r['sklearn']['median_s']:.2g} s | "
                     f"{r['ratio']:.2f}× | {r['mean_test_ours']:.3f} / {r['mean_test_sklearn']:.3f} ({r['metric']}) | "
                     f"{r['mean_diff_points']:+.2f} |")
    slowest = min(r["ratio"] for r in p["tasks"].values())
    worst = max(abs(r["mean_diff_points"]) for r in p["tasks"].values())
    return lines + ["", f"Slowest task's ratio, target ≥ {TARGETS['probe']:g}×: {verdict(slowest, TARGETS['probe'])}; "
                    f"largest mean test difference, target < 0.5 points: "
                    f"{verdict(worst, 0.5, higher_is_better=False)}.", ""]


def many_class_section(m: dict[str, Any] | None) -> list[str]:
    lines = ["## 4. Many-class probe (97 classes, 12 absent from train, 384-d)", ""]
    why = _skipped(m)
    if why:
        return lines + [f"Not measured: {why}. No verdict.", ""]
    lines += ["| budget | ours s | scikit-learn s | scikit-learn ÷ ours | objective ours − scikit-learn | "
              "val acc ours / scikit-learn |", "| --- | --- | --- | --- | --- | --- |"]
    for r in m["rows"]:
        lines.append(f"| {r['budget']} | {r['ours_s']:.2g} | {r['sklearn_s']:.2g} | {r['ratio']:.2f}× | "
                     f"{r['objective_gap']:+.1e} | {r['acc_ours']:.3f} / {r['acc_sklearn']:.3f} |")
    ratio = min(r["ratio"] for r in m["rows"])
    gap = max(r["objective_gap"] for r in m["rows"])
    return lines + ["", f"Slowest ratio, target ≥ {TARGETS['many_class']:g}×: {verdict(ratio, TARGETS['many_class'])}; "
                    f"objective at the chosen C equal or lower than scikit-learn's (ours − scikit-learn < 1e-6): "
                    f"{verdict(gap, 1e-6, higher_is_better=False)}.", ""]


def pipeline_section(pl: dict[str, Any] | None, root: Path) -> list[str]:
    lines = ["## 5. Pipeline", ""]
    why = _skipped(pl)
    if why:
        lines += [f"- No-op `dvc repro`: not measured ({why}). No verdict."]
    else:
        lines += [f"- No-op `dvc repro` ({pl['where']}): {pl['noop_seconds']:.2g} s, target < "
                  f"{TARGETS['noop_seconds']:g} s: {verdict(pl['noop_seconds'], TARGETS['noop_seconds'], higher_is_better=False)}."]
        if pl.get("probe_param_change_reruns") is not None:
            lines.append(f"- A probe-parameter change would re-run: {', '.join(pl['probe_param_change_reruns']) or '—'}.")
    record = root / "reports" / "run-time.json"
    if record.is_file():
        r = json.loads(record.read_text())
        state = "unfinished after" if r.get("complete") is False else "took"
        lines.append(f"- Full `{r['profile']}` profile (`make repro`, from reports/run-time.json): {state} "
                     f"{float(r['wall_seconds']) / 60:.0f} min on {r['cores']} cores, commit `{r['commit']}`, "
                     f"started {r['started']}.")
    else:
        lines.append("- Full pipeline run time: no timed run recorded (reports/run-time.json is absent).")
    return lines + [""]


def gpu_section(root: Path) -> list[str]:
    lines = ["## 6. GPU", ""]
    found = sorted((root / "reports" / "gpu").glob("*/pairs.csv"))
    if not found:
        return lines + ["No GPU result in this tree (reports/gpu/<task>/pairs.csv, written by "
                        "`scripts/device_finetune.sh` + `make gpu-report`). No verdict.", ""]
    for path in found:
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        speed = statistics.median(float(r["speedup"]) for r in rows)
        device = sorted({r["device_gpu"] for r in rows})
        lines.append(f"- {path.parent.name}: {len(rows)} fine-tuning runs on {', '.join(device)} paired with their "
                     f"CPU twins, median speed-up {speed:.2g}× (from {path.relative_to(root).as_posix()}; details "
                     f"in reports/gpu-{path.parent.name}.md).")
    return lines + [""]


def render(results: dict[str, Any], *, root: Path = REPO) -> str:
    """The whole report from a results mapping (possibly empty) and the generated files under `root`."""
    run = results.get("run", {})
    dirty = " with uncommitted changes" if run.get("dirty") else ""
    header = (f"Benchmark run at commit `{run.get('commit', 'unknown')}`{dirty} on {run.get('date', 'an unknown date')}, "
              f"{run.get('machine', 'unknown machine')}; {run.get('repeats', '?')} timed repeats after one warm-up "
              "per row, medians and min–max. Generated by `make bench` (`benchmarks/run_all.py`); do not edit.")
    lines = ["# Benchmarks", "", header, ""]
    if results.get("versions"):
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".", ""]
    if results.get("bf16", {}).get("note"):
        lines += [f"bf16: {results['bf16']['note']}.", ""]
    lines += embed_section(results.get("embed"))
    lines += finetune_section(results.get("finetune"))
    lines += probe_section(results.get("probe"), results.get("probe_max_budget", "?"))
    lines += many_class_section(results.get("many_class"))
    lines += pipeline_section(results.get("pipeline"), root)
    lines += gpu_section(root)
    if results.get("section_minutes"):
        lines.append("Section times (min): " + ", ".join(f"{k} {v:.2g}" for k, v in results["section_minutes"].items())
                     + ".")
    return "\n".join(lines) + "\n"


def main() -> int:
    source = REPO / "reports" / "benchmarks.json"
    results = json.loads(source.read_text()) if source.is_file() else {}
    sys.path.insert(0, str(REPO / "src"))
    from embedtune.io import write_text

    write_text(REPO / "reports" / "benchmarks.md", render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
