"""Pages as a reader's browser shows them (issue 32): a rendered notebook names its task and method and links
back to the index, and `pagecheck` finds in headless Chromium what a reader would (sideways scroll, shrunk
figures, index columns, float noise, log lines, missing back links)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune import pagecheck
from embedtune.notebook import page_chrome

REPO = Path(__file__).resolve().parents[1]
needs_chromium = pytest.mark.skipif(pagecheck.chromium() is None, reason="no Chromium on this machine")


def test_a_rendered_notebook_names_its_task_and_method_and_links_back_to_the_index() -> None:
    page = ("<html><head><title>02-finetune-full</title></head><body class='jp'><main>"
            "<h1 id='x'>Fine-tuning<a class=\"anchor-link\" href='#x'>¶</a></h1></main></body></html>")
    out = page_chrome(page, task="legal", method="lora", index_href="../index.html")
    assert "<title>legal · lora: Fine-tuning — Embed or Tune</title>" in out
    assert "<h1 id='x'>legal · lora: Fine-tuning<a" in out
    assert out.index("href='../index.html'") < out.index("<main>")
    summary = page_chrome(page, task=None, method=None, index_href="index.html")
    assert "<title>Fine-tuning — Embed or Tune</title>" in summary and "href='index.html'" in summary


def _png(path: Path, width_px: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width_px / 100, 1.0), dpi=100)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@needs_chromium
def test_pagecheck_finds_what_a_reader_would_and_passes_a_clean_page(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    (reports / "figures").mkdir(parents=True)
    _png(reports / "figures" / "small.png", 600)
    _png(reports / "figures" / "huge.png", 3000)
    (reports / "index.html").write_text(
        "<html><head><title>Index</title></head><body><a href='task/good.html'>good</a>"
        "<img src='figures/small.png' alt='test accuracy against labelled examples'><p>Backbones: tiny-bert</p>"
        "<table class='answer'><tr><th>labels</th></tr><tr><th>16</th></tr></table></body></html>")
    (reports / "task").mkdir()
    (reports / "task" / "good.html").write_text(
        "<html><head><title>task: good</title></head><body><a href='../index.html'>back</a>"
        "<table><tr><th>method</th><th>accuracy</th></tr><tr><td>probe</td><td>0.742</td></tr></table>"
        "<p>learning rate 3.0e-05</p><img src='../figures/small.png' alt='test accuracy against labelled examples'>"
        "</body></html>")
    (reports / "task" / "bad.html").write_text(
        "<html><head><title>task: bad</title></head><body>"
        "<table><tr><th></th><th>accuracy</th></tr><tr><td>0</td><td>0.9</td></tr><tr><td>1</td><td>0.8</td></tr></table>"
        "<p>0.923 ± 1.2e-16</p><pre>Loaded pretrained weights for efficientnet-lite0</pre>"
        "<div style='width:2200px'>wide</div><img src='../figures/huge.png' style='max-width:600px'>"
        "<img src='../figures/missing.png'>"
        "</body></html>")
    found = pagecheck.check_pages(reports, tick_pt=10.5)
    assert found["index.html"] == [] and found["task/good.html"] == []
    bad = " | ".join(found["task/bad.html"])
    for expected in ("scrolls sideways", "image not loaded", "figure shrunk", "index column", "float noise",
                     "log line", "no link back to the index", "without alt text"):
        assert expected in bad, (expected, bad)
    # an index whose answer grid starts below the fold and that names no backbone
    below = {"scroll_width": 1400, "window_width": 1400, "images": [], "tables": [], "text": "results", "title": "x",
             "links": [], "headline": {"figure_bottom": 850, "answer_bottom": 1900}}
    fold = " | ".join(pagecheck.problems(Path("index.html"), below, tick_pt=10.5, is_index=True))
    assert "headline answer is not above the fold" in fold and "headline figure" not in fold
    assert "does not name the backbones" in fold


@needs_chromium
@pytest.mark.slow
def test_every_committed_page_reads_as_a_page() -> None:
    found = pagecheck.check_pages(REPO / "reports")
    assert not {page: issues for page, issues in found.items() if issues}, json.dumps(found, indent=1)


def test_a_notebook_figure_carries_alt_text_that_says_what_it_shows(tmp_path: Path) -> None:
    from embedtune.notebook import figure

    _png(tmp_path / "curve.png", 300)
    shown = figure(tmp_path / "curve.png", "learning_curve", subject="legal · lora", metric="macro_f1")._repr_html_()
    assert 'src="data:image/png;base64,' in shown
    assert 'alt="legal · lora: test macro_f1 (y) against labelled examples' in shown
    with pytest.raises(KeyError, match="known"):
        figure(tmp_path / "curve.png", "no_such_kind")
