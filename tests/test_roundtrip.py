"""Every number of the headline answer, read back from the page a reader opens (index.html) and the README
block, equals its source value within the rounding it is shown at (issue 32: a count once read 10× too
small). Property-style: several seeded random runs with counts, seconds and FLOPs across many magnitudes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from embedtune import reports
from embedtune.compare import headline as headline_of
from embedtune.pagecheck import html_tables, numbers
from embedtune.tables import answer_table

INFO = {"profile": "cpu", "commit": "abc1234", "source tree": "clean", "date": "2026-12-05 12:00 UTC",
        "machine": "x86_64, 2 cores, Linux", "backbones": "sentiment: pkg:all-minilm-l6-v2"}


def _run(rng: np.random.Generator, task: str) -> dict:
    """A random but well-formed task: results per method × budget × seed, comparisons with the probe, a guide."""
    budgets = [16, 64, 256, 1024, int(rng.integers(2_000, 60_000))]
    methods = ["classic", "probe", "layer_probe", "partial", "lora", "lp_ft", "full"]
    scale = {m: 10 ** rng.uniform(-1, 3) for m in methods}  # seconds: 0.1 … 1,000
    flops = {m: 10 ** rng.uniform(5, 16) for m in methods}  # ratios down to 1e-11: never shown as 0
    rows = []
    for method in methods:
        for budget in budgets:
            for seed in range(int(rng.integers(2, 6))):
                rows.append({"task": task, "method": method, "budget": budget, "seed": seed,
                             "accuracy": float(rng.uniform(0.4, 0.95)),
                             "train_seconds": scale[method] * budget ** 0.5 * rng.uniform(0.9, 1.1),
                             "infer_ms_per_1000": float(10 ** rng.uniform(0, 4)),
                             "train_flops": flops[method] * budget * rng.uniform(0.9, 1.1),
                             "infer_flops_per_row": float(10 ** rng.uniform(3, 10))})
    results = pd.DataFrame(rows)
    comparisons, guide = [], []
    for budget in budgets:
        for method in methods[2:] + ["classic"]:
            diff = float(rng.normal(3, 6))
            half, adj = float(rng.uniform(0.5, 5)), float(rng.uniform(5, 9))
            comparisons.append({"method_a": method, "method_b": "probe", "budget": budget, "metric": "accuracy",
                                "diff_points": diff, "ci_low": diff - half, "ci_high": diff + half,
                                "ci_low_adj": diff - adj, "ci_high_adj": diff + adj,
                                "significant": bool(diff - adj > 0)})
        pick = str(rng.choice(methods))
        seeds = int(results[(results["method"] == pick) & (results["budget"] == budget)]["seed"].nunique())
        guide.append({"budget": budget, "pick": pick, "best": pick, "tied": f"{pick}, probe",
                      "pick_mean": float(results[(results["method"] == pick)
                                                 & (results["budget"] == budget)]["accuracy"].mean()),
                      "pick_seeds": seeds, "expected_loss_points": float(rng.uniform(0, 2)), "margin_points": 1.0,
                      "pick_gain_over_probe_points": float(rng.normal(3, 5)),
                      "pick_build_seconds": float(10 ** rng.uniform(-1, 4)),
                      "pick_serve_seconds_per_1000": float(10 ** rng.uniform(-2, 2)),
                      **{f"p_best {m}": float(rng.uniform()) for m in methods},
                      **{f"build_s {m}": float(10 ** rng.uniform(-2, 4)) for m in methods},
                      **{f"test {m}": float(results[(results["method"] == m)
                                                    & (results["budget"] == budget)]["accuracy"].mean())
                         for m in methods}})
    return {"results": results, "comparisons": pd.DataFrame(comparisons), "guide": pd.DataFrame(guide),
            "headline": headline_of(results, "accuracy")}


def _expected(t: dict, budget: int) -> dict:
    """The source values of one answer row, computed here independently of tables.answer_table."""
    g = t["guide"].set_index("budget").loc[budget]
    results, pick = t["results"], str(g["pick"])
    med = results.groupby(["method", "budget"]).median(numeric_only=True)
    out = {"pick": pick, "score": float(g["pick_mean"]), "seeds": int(g["pick_seeds"])}
    if pick != "probe":
        c = t["comparisons"]
        ahead = c[(c["method_a"] == pick) & (c["method_b"] == "probe") & (c["budget"] == budget)]
        if len(ahead):
            row = ahead.iloc[0]
            out["gain"] = [row["diff_points"], row["ci_low_adj"], row["ci_high_adj"]]
        else:  # stored as probe − pick (classic is compared that way round): the gain is its negative
            row = c[(c["method_a"] == "probe") & (c["method_b"] == pick) & (c["budget"] == budget)].iloc[0]
            out["gain"] = [-row["diff_points"], -row["ci_high_adj"], -row["ci_low_adj"]]
    for column in ("infer_ms_per_1000", "train_flops", "infer_flops_per_row"):
        out[column] = float(med.loc[(pick, budget), column] / med.loc[("probe", budget), column])
    out["build"] = float(g[f"build_s {pick}"] / g["build_s probe"])  # build: embedding pass and search included
    best_test = max(float(g[c]) for c in g.index if str(c).startswith("test "))
    out["flagged"] = 100 * (best_test - float(g["pick_mean"])) > float(g["margin_points"])
    return out


GRID_CELL = re.compile(r"^(?P<pick>\w+(?: †)?) (?:\(the reference\)|(?P<gain>[+-]\d\S* \[[^\]]+\]\*?)) "
                       r"test (?P<score>\S+) \((?P<seeds>\d+ (?:seeds|fit))\) · ties: (?P<tied>.+?) "
                       r"build (?P<build_s>.+?) s / (?P<build_f>.+?) FLOPs · serve (?P<serve_s>.+?) s / "
                       r"(?P<serve_f>.+?) FLOPs$")


def _grid_rows(header: list[str], rows: list[list[str]]) -> list[dict]:
    """The answer grid read back into one record per task × budget: a column per task ("legal: macro-F1 (all =
    5,477 labels)"), a row per budget ("all": the header's count), three lines per cell (`GRID_CELL`)."""
    assert header[0] == "labels", header
    columns = []
    for h in header[1:]:
        task, rest = h.split(": ", 1)
        (all_labels,) = numbers(rest.split("(all = ")[1])
        columns.append((task, all_labels))
    out = []
    for cells in rows:
        for (task, all_labels), cell in zip(columns, cells[1:]):
            if cell == "not run":
                continue
            found = GRID_CELL.match(cell)
            assert found, cell
            budget = all_labels if cells[0] == "all" else numbers(cells[0])[0]
            out.append({"task": task, "budget": budget, **found.groupdict()})
    return out


def _check_rows(records: list[dict], per_task: dict) -> int:
    """Each record of the answer (`_grid_rows`) against `_expected`: the pick and its flag, the test score and
    seeds, the gain with its interval and the four cost ratios, each within the rounding shown."""
    checked = 0
    for r in records:
        t = per_task[r["task"]]
        budget = r["budget"]
        assert budget == int(budget) and int(budget) in set(t["guide"]["budget"]), r  # exact count
        expected = _expected(t, int(budget))
        assert r["pick"] == expected["pick"] + (" †" if expected["flagged"] else ""), r
        assert abs(float(r["score"]) - expected["score"]) <= 0.0005 + 1e-12, r
        assert numbers(r["seeds"])[0] == expected["seeds"], r
        assert r["tied"] == str(t["guide"].set_index("budget").loc[int(budget), "tied"]), r
        if "gain" in expected:
            shown = numbers(r["gain"])
            assert np.allclose(shown, expected["gain"], atol=0.05 + 1e-9), (shown, expected["gain"])
        else:
            assert r["gain"] is None, r
        for name, column in (("build_s", "build"), ("serve_s", "infer_ms_per_1000"), ("build_f", "train_flops"),
                             ("serve_f", "infer_flops_per_row")):
            if r[name] == "—":  # a cost the pick does not have (classic's FLOPs are not counted)
                assert not np.isfinite(expected[column]), (name, r, expected[column])
                continue
            (ratio,) = numbers(r[name])
            # two significant digits: within half a unit of the second digit (a power of ten off fails)
            assert abs(ratio - expected[column]) <= 0.051 * abs(expected[column]) + 1e-12, (name, ratio, expected)
        checked += 1
    return checked


def _answer_grid_of_readme(readme: str) -> list[list[str]]:
    """The answer grid of a README's generated block: header row first, a cell's lines joined by a space."""
    block = readme.split(reports.README_BEGIN)[1].split(reports.README_END)[0]
    table = block.split("\n\n| labels |")[1].split("\n\n")[0]
    rows = [[c.strip().replace("<br>", " ") for c in line.strip().strip("|").split(" | ")]
            for line in ("| labels |" + table).splitlines() if not line.startswith("|---")]
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_every_number_of_the_answer_on_the_index_and_readme_equals_its_source(tmp_path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    per_task = {task: _run(rng, task) for task in ("sentiment", "legal")}
    reports.index_html(reports_dir=tmp_path, per_task=per_task, info=INFO)
    answer = html_tables((tmp_path / "index.html").read_text())[0]
    expected_rows = sum(len(t["guide"]) for t in per_task.values())
    assert _check_rows(_grid_rows(answer[0], answer[1:]), per_task) == expected_rows

    block = reports.readme_section(headlines={t: v["headline"] for t, v in per_task.items()}, info=INFO,
                                   key_figure=None, answer=answer_table(per_task))
    cells = _answer_grid_of_readme(block)
    assert _check_rows(_grid_rows(cells[0], cells[1:]), per_task) == expected_rows


def test_every_number_of_the_committed_answer_equals_its_committed_source() -> None:
    """The same round trip on what is committed: reports/index.html and the README's generated block against
    results/<task>/ (a page rendered from other results than the ones committed fails here)."""
    from pathlib import Path

    from embedtune.bundle import task_bundle

    root = Path(__file__).resolve().parents[1]
    tasks = [t.name for t in sorted((root / "results").iterdir()) if (t / "decision.csv").is_file()]
    per_task = {task: task_bundle(root, task) for task in tasks}
    expected_rows = sum(len(t["guide"]) for t in per_task.values())
    for page in ("index.html", "summary.html"):  # the grid is the first table of both
        answer = html_tables((root / "reports" / page).read_text())[0]
        assert _check_rows(_grid_rows(answer[0], answer[1:]), per_task) == expected_rows, page

    cells = _answer_grid_of_readme((root / "README.md").read_text())
    assert _check_rows(_grid_rows(cells[0], cells[1:]), per_task) == expected_rows
