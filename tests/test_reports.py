"""Reports are generated from the metrics files, and the pages load in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedtune import reports


def build_index(params_path: Path, root: Path, *, readme: Path) -> None:
    """What the summary stage writes from each task's headline (its other inputs left empty here)."""
    from embedtune.params import load_params

    params = load_params(params_path)
    per_task = {t: {"headline": json.loads((root / "metrics" / t / "headline.json").read_text()),
                    "guide": pd.DataFrame(), "comparisons": pd.DataFrame()} for t in params.tasks}
    info = reports.provenance(params.profile)
    reports.index_html(reports_dir=root / "reports", per_task=per_task, info=info)
    reports.update_readme(readme, reports.readme_section(
        headlines={t: b["headline"] for t, b in per_task.items()}, info=info,
        key_figure="reports/figures/summary-learning-curves.png"))

HEADLINE = {"budget": 256, "metric": "accuracy", "crossing_budget": {"full": 256},
            "methods": {"probe": {"mean": 0.7123, "std": 0.01}, "full": {"mean": 0.8456, "std": 0.02}}}


def _fixture_project(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path
    (root / "params.yaml").write_text((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    for task in ("sentiment", "medical", "legal"):
        (root / "metrics" / task).mkdir(parents=True)
        (root / "metrics" / task / "headline.json").write_text(json.dumps(HEADLINE))
        (root / "reports" / task).mkdir(parents=True)
        (root / "reports" / task / "03-compare.html").write_text("<html><body><h1>compare</h1></body></html>")
    results = pd.DataFrame([{"method": m, "budget": b, "seed": s, "accuracy": a + 0.01 * s}
                            for m, a in (("probe", 0.7), ("full", 0.8)) for b in (16, 64, 256) for s in range(3)])
    (root / "reports" / "figures").mkdir(parents=True)
    reports.save_figure(reports.learning_curve_figure(results, "accuracy"),
                        root / "reports" / "figures" / "summary-learning-curves.png")
    # the summary stage renders this page beside the index it writes
    (root / "reports" / "summary.html").write_text("<html><body><h1>summary</h1></body></html>")
    readme = root / "README.md"
    readme.write_text(f"# x\n\n{reports.README_BEGIN}\nold\n{reports.README_END}\n\ntail\n")
    return root, readme


def test_readme_and_index_are_generated_from_metrics_files(tmp_path) -> None:
    root, readme = _fixture_project(tmp_path)
    build_index(root / "params.yaml", root, readme=readme)
    text = readme.read_text()
    assert "0.846 ± 0.020" in text and "0.712 ± 0.010" in text and text.endswith("tail\n")
    assert "reports/figures/summary-learning-curves.png" in text
    # change a metrics fixture: the rendered numbers follow
    changed = dict(HEADLINE, methods={**HEADLINE["methods"], "full": {"mean": 0.5, "std": 0.0}})
    (root / "metrics" / "legal" / "headline.json").write_text(json.dumps(changed))
    build_index(root / "params.yaml", root, readme=readme)
    assert "0.500 ± 0 |" in readme.read_text()  # a spread of exactly 0 reads 0, as in every table
    assert "0.500 ± 0</td>" in (root / "reports" / "index.html").read_text()


def test_the_index_links_the_declared_tasks_pages_only(tmp_path) -> None:
    root, readme = _fixture_project(tmp_path)
    for page in ("legal/03-compare.html", "dropped_task/03-compare.html"):
        (root / "reports" / page).parent.mkdir(parents=True, exist_ok=True)
        (root / "reports" / page).write_text("<html></html>")
    build_index(root / "params.yaml", root, readme=readme)
    index = (root / "reports" / "index.html").read_text()
    assert "href='legal/03-compare.html'" in index and "dropped_task" not in index


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if (tag, name) in (("a", "href"), ("img", "src")) and value:
                self.targets.append(value)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
        if subprocess.run(install, capture_output=True, timeout=900, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600, env=env)
            subprocess.run(install, capture_output=True, timeout=900, env=env)
        return shutil.which("chromium")
    return None


@pytest.mark.browser
def test_index_page_loads_links_resolve_and_screenshot_is_not_blank(tmp_path) -> None:
    root, readme = _fixture_project(tmp_path)
    build_index(root / "params.yaml", root, readme=readme)
    index = root / "reports" / "index.html"
    parser = _Links()
    parser.feed(index.read_text())
    assert parser.targets, "the index links nothing"
    for target in parser.targets:
        assert not target.startswith(("/", "http")), f"{target}: links must be relative"
        assert (index.parent / target).is_file(), f"{target} does not resolve"
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed and could not be installed (needs root and apt-get)")
    shot = tmp_path / "shot.png"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
                           f"--screenshot={shot}", "--window-size=1200,900", index.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.std() > 0.02  # not a blank page
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", index.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "Embed or Tune" in dom and "0.846" in dom
    assert np.isfinite(pixels).all()


def test_readable_spread_prints_zero_for_identical_values_and_marks_single_seeds() -> None:
    import pandas as pd

    from embedtune.tables import readable_spread

    frame = pd.DataFrame({"accuracy": [0.7, 0.7, 0.7, 0.8, 0.9]}, index=[0, 0, 0, 1, 2])
    spread = frame.groupby(level=0)["accuracy"].std().to_frame("accuracy std").reset_index()
    out = readable_spread(spread)["accuracy std"].tolist()
    assert out[0] == "0" and out[1] == "— (1 seed)" and out[2] == "— (1 seed)"
    assert readable_spread(pd.DataFrame({"x std": [0.0123456, 1.2e-16]}))["x std"].tolist() == ["0.012", "0"]


def test_counts_read_as_the_numbers_they_are() -> None:
    """Issue 32: 10,199 labels once read "1.02 k" (divided by 1e4); LoRA's 332,546 parameters "33.3 k"."""
    from embedtune.tables import cell_text, count_text

    assert count_text(10199) == "10,199" and count_text(332546) == "332,546" and count_text(10000) == "10,000"
    assert count_text(22713216) == "22.7 M" and count_text(7.0e9) == "7.00 G"
    assert cell_text(10199, "budget") == "10,199" and cell_text(5477.0, "crossing budget") == "5,477"
    assert cell_text(64, "budget") == "64"


def test_large_and_tiny_numbers_read_in_one_notation() -> None:
    from embedtune.tables import cell_text, significant

    assert significant(1.76e6, 3) == "1.76 M" and significant(7.0e9, 3) == "7.00 G" and significant(2.5e15, 2) == "2.5 P"
    assert significant(5.6e-15, 2) == "0" and significant(-1.2e-16, 3) == "0"
    assert cell_text(1.76e6 + 0.5, "train_flops") == "1.8 M" and cell_text(41.7e6, "train_flops") == "41.7 M"


def test_the_answer_table_reads_the_pick_its_gain_and_its_cost_against_the_probe() -> None:
    from embedtune.tables import answer_note, answer_table

    results = pd.DataFrame([{"method": m, "budget": 256, "seed": s, "accuracy": a, "train_seconds": t,
                             "infer_ms_per_1000": i, "train_flops": f, "infer_flops_per_row": g}
                            for m, a, t, i, f, g in (("probe", 0.70, 2.0, 5.0, 1e9, 1e8),
                                                     ("full", 0.75, 20.0, 5.0, 3e12, 1e8)) for s in range(3)])
    comparisons = pd.DataFrame([{"method_a": "full", "method_b": "probe", "budget": 256, "diff_points": 5.0,
                                 "ci_low": 3.0, "ci_high": 7.0, "ci_low_adj": 2.0, "ci_high_adj": 8.0,
                                 "significant": True}])
    # build seconds from the guide (embedding pass and search share included): 40 s against the probe's 4 s
    guide = pd.DataFrame([{"budget": 256, "pick": "full", "tied": "lora, full", "pick_mean": 0.75, "pick_seeds": 3,
                           "margin_points": 1.0, "build_s probe": 4.0, "build_s full": 40.0, "test probe": 0.70,
                           "test full": 0.75, "test lora": 0.755}])
    task = {"guide": guide, "results": results, "comparisons": comparisons, "headline": {"metric": "accuracy"}}
    table = answer_table({"sentiment": task})
    row = table.iloc[0]
    assert row["pick"] == "full" and row["tied with the best"] == "lora, full"  # 0.5 points below lora: no flag
    assert row["gain over probe (points)"] == "+5.0 [+2.0, +8.0]*"  # the simultaneous interval, as the pages show
    assert row["build × probe (s)"] == "10×" and row["serve × probe (s)"] == "1.0×"
    assert row["build × probe (FLOPs)"] == "3000×" and row["test score"] == "0.750 (3 seeds)" and row["metric"] == "accuracy"
    assert answer_note(table) == ""
    flagged = answer_table({"sentiment": {**task, "guide": guide.assign(**{"test lora": 0.80})}})
    assert flagged.iloc[0]["pick"] == "full †" and answer_note(flagged).startswith("† On test this pick scores")
