"""Pages checked as a reader's browser shows them: every rendered page opened in headless Chromium at a
1,400 × 900 window, measured, and checked against the rules of a readable page.

    python -m embedtune.pagecheck reports        # prints one line per problem; exit status 1 when any

Protocol: each page is copied (with the figures it links) into a scratch folder with a small script
appended that, after load, measures the document and writes the measurements into the page; Chromium's
``--dump-dom`` returns them. Rules per page: no horizontal scroll at 1,400 px (document width ≤ window);
every image loaded; every figure shown at a size where its ticks (drawn at ``reports.MIN_TICK_PT``) are at
least 9 pt; no table with a 0…N index column; no float noise (``1.2e-16``) and no log lines in the visible
text; a title of its own; a link back to the index (every page but the index); on the index, the headline
figure and the answer grid (``table.answer``) end above the fold and the backbones are named. No stage
imports this module.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WINDOW = (1400, 900)
MIN_RENDERED_PT = 9.0
FLOAT_NOISE = re.compile(r"\b\d(?:\.\d+)?e-(?:1\d|[2-9]\d)\b")  # 1e-10 and below: rounding residue, not a value
NBCONVERT_NO_ALT = "No description has been provided for this image"  # nbconvert fills a missing alt with it
LOG_LINES = ("Loaded pretrained weights", "WARNING", "it/s]", "Traceback", "UserWarning", "IProgress")
PROBE = """
<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({src: i.getAttribute('src').slice(0, 80), loaded: i.complete &&
      i.naturalWidth > 0, natural: i.naturalWidth, shown: i.getBoundingClientRect().width,
      alt: i.getAttribute('alt') || ''}));
  const tables = [...document.querySelectorAll('table')].map(t => {
    const rows = [...t.querySelectorAll('tr')];
    const first = rows.map(r => (r.cells[0] ? r.cells[0].innerText.trim() : ''));
    return {first_header: first[0] || '', first_column: first.slice(1, 60)};
  });
  const answer = document.querySelector('table.answer'), first = document.images[0];
  const headline = {answer_bottom: answer ? answer.getBoundingClientRect().bottom : null,
                    figure_bottom: first ? first.getBoundingClientRect().bottom : null};
  const out = {headline: headline, scroll_width: document.documentElement.scrollWidth, window_width: window.innerWidth,
               title: document.title, images: imgs, tables: tables, text: document.body.innerText,
               links: [...document.links].map(a => a.getAttribute('href'))};
  const pre = document.createElement('pre'); pre.id = 'pagecheck';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>
"""


def html_tables(page: str) -> list[list[list[str]]]:
    """Every <table> of an HTML page as rows of cell texts (header row first), with the standard library."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tables: list[list[list[str]]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag == "table":
                self.tables.append([])
            elif tag == "tr" and self.tables:
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = []
            elif tag in ("br", "div", "p") and self.cell is not None:  # a line break inside a cell reads as a space
                self.cell.append(" ")

        def handle_endtag(self, tag: str) -> None:
            if tag in ("td", "th") and self.cell is not None and self.tables and self.tables[-1]:
                self.tables[-1][-1].append(" ".join("".join(self.cell).split()))
                self.cell = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    parser = Tables()
    parser.feed(page)
    return parser.tables


SUFFIX = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
NUMBER = re.compile(r"[+−-]?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?(?:\s?[kMGTP](?![a-zA-Z]))?")


def numbers(text: str) -> list[float]:
    """The numbers a reader reads in a cell, in order: "10,199" → 10199, "1.76 M" → 1.76e6, "−0.5" → −0.5."""
    out = []
    for token in NUMBER.findall(text):
        token = token.replace("−", "-").replace(",", "").strip()
        scale = SUFFIX.get(token[-1], 1.0) if token[-1] in SUFFIX else 1.0
        out.append(float(token.rstrip("kMGTP").strip()) * scale)
    return out


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def measure(page: Path, *, browser: str, reports_dir: Path) -> dict[str, Any]:
    """Open `page` (under `reports_dir`) in headless Chromium at `WINDOW` and return what the probe measured."""
    with tempfile.TemporaryDirectory(prefix="pagecheck-") as tmp:
        copy_root = Path(tmp) / "reports"
        shutil.copytree(reports_dir, copy_root, ignore=shutil.ignore_patterns("*.ipynb", "*.json", "*.csv"))
        copy = copy_root / page.relative_to(reports_dir)
        text = copy.read_text(encoding="utf-8")
        copy.write_text(text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE,
                        encoding="utf-8")
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=10000",
                               "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="pagecheck">(.*?)</pre>', done.stdout, re.S)
    if not match:
        raise RuntimeError(f"{page}: Chromium returned no measurement (exit {done.returncode}): {done.stderr[-500:]}")
    import html

    return json.loads(html.unescape(match.group(1)))


def problems(page: Path, found: dict[str, Any], *, tick_pt: float, is_index: bool) -> list[str]:
    """The rules of the module docstring, applied to one page's measurements."""
    out = []
    if found["scroll_width"] > found["window_width"]:
        out.append(f"scrolls sideways: {found['scroll_width']} px wide in a {found['window_width']} px window")
    for img in found["images"]:
        if not img["loaded"]:
            out.append(f"image not loaded: {img['src']}")
        elif img["natural"] and tick_pt * img["shown"] / img["natural"] < MIN_RENDERED_PT:
            out.append(f"figure shrunk to {img['shown']:.0f} of {img['natural']} px: ticks at "
                       f"{tick_pt * img['shown'] / img['natural']:.1f} pt ({img['src'][:40]})")
        if len(img.get("alt", "")) < 20 or img.get("alt") == NBCONVERT_NO_ALT:
            out.append(f"image without alt text saying what it shows: {img['src'][:40]}")
    for table in found["tables"]:
        column = table["first_column"]
        if table["first_header"] == "" and column and column == [str(i) for i in range(len(column))]:
            out.append("a table shows a 0…N index column")
    text = found["text"]
    noise = FLOAT_NOISE.findall(text)
    if noise:
        out.append(f"float noise in the text: {sorted(set(noise))[:5]}")
    for line in LOG_LINES:
        if line in text:
            out.append(f"log line in the text: {line!r}")
    if not found["title"].strip():
        out.append("no title")
    if not is_index and not any(h and h.rstrip("/").endswith("index.html") for h in found["links"]):
        out.append("no link back to the index")
    if is_index:  # the headline above the fold: the answer figure, the answer grid and the backbones named
        fold = found.get("headline", {})
        for part in ("figure", "answer"):
            bottom = fold.get(f"{part}_bottom")
            if bottom is None or bottom > WINDOW[1]:
                out.append(f"the headline {part} is not above the fold at {WINDOW[0]} × {WINDOW[1]} "
                           f"(bottom at {bottom} px)")
        if "Backbones:" not in text[:3000]:
            out.append("the headline does not name the backbones")
    return out


def check_pages(reports_dir: Path, *, tick_pt: float | None = None) -> dict[str, list[str]]:
    """Problems per page (relative path) for every HTML page under `reports_dir`, titles shared by two pages
    included. Raises when no Chromium is installed."""
    from .reports import MIN_TICK_PT

    browser = chromium()
    if browser is None:
        raise RuntimeError("no Chromium found (chromium, chromium-browser or google-chrome on PATH)")
    reports_dir = Path(reports_dir)
    pages = sorted(p for p in reports_dir.rglob("*.html") if not p.name.startswith("."))
    out, titles = {}, {}
    for page in pages:
        rel = page.relative_to(reports_dir).as_posix()
        found = measure(page, browser=browser, reports_dir=reports_dir)
        out[rel] = problems(page, found, tick_pt=tick_pt or MIN_TICK_PT, is_index=rel == "index.html")
        titles.setdefault(found["title"], []).append(rel)
    for title, shared in titles.items():
        if len(shared) > 1:
            for rel in shared:
                out[rel].append(f"title {title!r} shared with {len(shared) - 1} other page(s)")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    reports_dir = Path(args[0] if args else "reports")
    found = check_pages(reports_dir)
    bad = 0
    for rel, issues in found.items():
        for issue in issues:
            print(f"{rel}: {issue}")
            bad += 1
    print(f"{len(found)} pages, {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
