"""The committed reports as a reader opens them: no code cells, no machine's paths, no NaN in the summary and
the index, and the index leads with the answers. These read the files in git, so they hold for the run that
was committed, not for a fixture."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import visible_html

ROOT = Path(__file__).resolve().parents[1]
# a POSIX home/system/temp folder or a Windows drive path; a URL's path ("https://x/tmp/") is not a hit
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/-])/(?:home|root|tmp|work|Users|mnt|opt|var|srv|private)/[\w.-]+"
                           r"|\b[A-Z]:\\\\?[\w.-]+")
NAN = re.compile(r"\bNaN\b|\bnan\b")


def _committed(*patterns: str) -> list[Path]:
    done = subprocess.run(["git", "ls-files", "--", *patterns], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / line for line in done.stdout.splitlines() if line]


PAGES = _committed("reports/*.html", "reports/**/*.html")
TEXT_FILES = _committed("reports/*.md", "reports/*.json", "metrics/**/*.json", "results/**/*.csv",
                        "results/**/*.json", "README.md", "dvc.lock")


def test_the_reports_are_committed() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"reports/index.html", "reports/summary.html"} <= names
    assert any(n.endswith("/03-compare.html") for n in names)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_committed_page_shows_no_code_and_no_machine_path(page: Path) -> None:
    text = visible_html(page)
    assert 'class="highlight hl-ipython3"' not in text, f"{page.name}: a code cell is rendered"
    hits = ABSOLUTE_PATH.findall(text)
    assert not hits, f"{page.relative_to(ROOT)}: absolute paths of the machine that ran it: {hits[:3]}"


@pytest.mark.parametrize("path", TEXT_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_committed_result_names_no_machine_path(path: Path) -> None:
    hits = ABSOLUTE_PATH.findall(path.read_text(encoding="utf-8"))
    assert not hits, f"{path.relative_to(ROOT)}: absolute paths: {hits[:3]}"


@pytest.mark.parametrize("name", ["summary.html", "index.html"])
def test_the_summary_and_the_index_have_no_nan(name: str) -> None:
    text = re.sub(r"<[^>]+>", " ", visible_html(ROOT / "reports" / name))
    hits = [text[max(m.start() - 60, 0):m.end() + 20] for m in NAN.finditer(text)]
    assert not hits, f"reports/{name} shows NaN: {hits[:3]}"


def test_the_compare_pages_have_no_nan() -> None:
    for page in [p for p in PAGES if p.name == "03-compare.html"]:
        text = re.sub(r"<[^>]+>", " ", visible_html(page))
        hits = [text[max(m.start() - 60, 0):m.end() + 20] for m in NAN.finditer(text)]
        assert not hits, f"{page.relative_to(ROOT)} shows NaN: {hits[:3]}"


def test_the_index_leads_with_the_answers_then_the_tasks() -> None:
    text = visible_html(ROOT / "reports" / "index.html")
    order = [text.find(h) for h in ("Backbones:", "class='answer'", "How the pick is made", "Headline",
                                    "Decision guide", "Every report")]
    assert -1 not in order, f"reports/index.html misses a section: {order}"
    assert order == sorted(order), ("reports/index.html: the answer (figure, grid), the rule, headline, per-task "
                                    "guides, links — in that order")


def test_no_papermill_scratch_under_reports() -> None:
    leftovers = [p for p in _committed("reports/**")
                 if any(part.startswith("tmp") for part in p.relative_to(ROOT).parts)]
    assert not leftovers, f"papermill scratch committed under reports/: {leftovers[:3]}"

