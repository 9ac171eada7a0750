"""The benchmark report never states a verdict without its numbers (benchmarks/report.py)."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import load_script


def _report_module():
    return load_script("benchmarks/report.py")


def test_an_empty_tree_gives_no_verdict(tmp_path: Path) -> None:
    text = _report_module().render({}, root=tmp_path)
    assert not re.search(r"\b(met|missed)\b", text), text
    assert text.count("No verdict") >= 5


def test_a_measured_section_gives_its_verdict_with_its_numbers(tmp_path: Path) -> None:
    report = _report_module()
    rows = [{"budget": 256, "ours_s": 10.0, "sklearn_s": 12.0, "ratio": 1.2, "objective_gap": -1e-4,
             "acc_ours": 0.2, "acc_sklearn": 0.21}]
    text = report.render({"many_class": {"rows": rows}, "pipeline": {"skipped": "dvc missing"}}, root=tmp_path)
    assert "met (1.2 against ≥ 1)" in text
    for line in text.splitlines():  # every verdict sits beside the number it judges
        for hit in re.finditer(r"\b(met|missed) \(", line):
            assert re.search(r"\d", line[hit.end():hit.end() + 12]), line
    assert "No-op `dvc repro`: not measured (dvc missing). No verdict." in text


def test_a_host_without_native_bf16_gets_no_bf16_row_and_is_told_why() -> None:
    from .conftest import load_script

    report = load_script("benchmarks/report.py")
    stats = {"per_s": 10.0, "median_s": 1.0, "min_s": 0.9, "max_s": 1.1}
    results = {"bf16": {"native": False, "note": "this CPU has no native bf16: every bf16 row is skipped"},
               "embed": {"n": 10, "ours": stats, "sentence_transformers": stats, "ratio": 1.2, "cosine_min": 0.99,
                         "cosine_mean": 0.999, "padding_ceiling": 1.1},
               "finetune": {"batch": 16, "steps": 5, "length_grouping": 4, "ours": stats, "loss_ours": 0.6,
                            "trainer": stats, "loss_trainer": 0.6, "ratio": 1.1,
                            "matmul": {"shape": "512×384×1536", "fp32_gflops": 18.0, "step_gflop": 1.0,
                                       "ours_fp32_fraction": 0.4}}}
    text = report.render(results)
    assert "no native bf16" in text and "bf16 autocast |" not in text and "GFLOP/s bf16" not in text
