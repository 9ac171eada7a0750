"""Pending: rename to tests/test_committed_summary.py in the commit that lands the rerun of the cpu profile.

The committed reports/summary.html is still the previous run's (rendered by the old code, which printed 5+
decimals); this test reads the committed page, so it is enabled together with the run that regenerates it
(issue "A verdict you can act on", item 5). pytest does not collect this file under its current name.
"""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import visible_html

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def _significant_digits(number: str) -> int:
    mantissa = number.replace(",", "").split("e")[0]
    digits = mantissa.replace(".", "") if "." in mantissa else mantissa.rstrip("0")
    return len(digits.lstrip("0"))


def test_no_cell_of_the_committed_summary_has_more_than_4_significant_digits() -> None:
    """Every table cell on the summary page is rounded to what it can support (tables.readable)."""
    text = visible_html(ROOT / "reports" / "summary.html")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", text, flags=re.S)
    assert cells, "reports/summary.html has no table cells"
    long = [cell for cell in cells for n in NUMBER.findall(re.sub(r"<[^>]+>", "", cell))
            if _significant_digits(n) > 4]
    assert not long, f"summary cells with more than 4 significant digits: {long[:5]}"
