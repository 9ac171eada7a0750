"""Every table of every committed page, read back and compared with the files it comes from (issue 32: "a
property test round-trips every number on every committed page to its source value in results/ and metrics/
within its rounding"). The expected values are computed here from the CSV and JSON files with pandas, not
with the code that rendered the pages; a number agrees when it is within half a unit of the last digit shown
(a shown "340" within 5, "0.743" within 0.0005, "1.76 M" within 5,000). The answer grid of the index, the
summary and the README is checked in test_roundtrip.py; the table of published numbers is cited, not measured.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from embedtune.pagecheck import NUMBER, SUFFIX, html_tables, numbers
from embedtune.registry import METHOD_ORDER
from embedtune.tables import FLAG_COLUMNS, header_text

ROOT = Path(__file__).resolve().parents[1]
TASKS = [p.name for p in sorted((ROOT / "results").iterdir()) if (p / "decision.csv").is_file()] \
    if (ROOT / "results").is_dir() else []
pytestmark = pytest.mark.skipif(not TASKS, reason="no committed results")


def _tolerance(token: str) -> float:
    """Half a unit of the last digit `token` shows (trailing zeros of a whole number are not shown digits)."""
    body = token.replace("−", "-").replace(",", "").strip()
    scale = SUFFIX.get(body[-1], 1.0) if body[-1] in SUFFIX else 1.0
    body = body.rstrip("kMGTP").strip()
    mantissa, _, exponent = body.lower().partition("e")
    if "." in mantissa:
        unit = 10.0 ** -len(mantissa.split(".")[1])
    else:
        digits = mantissa.lstrip("+-")
        unit = 10.0 ** (len(digits) - len(digits.rstrip("0"))) if digits.strip("0") else 1.0
    return unit * 10.0 ** (int(exponent) if exponent else 0) * scale / 2


def agrees(cell: str, expected: Any) -> bool:
    """`cell` shows `expected`: a string exactly, a number (or the numbers of "mean ± sd (n seeds)") within the
    rounding shown, a missing value as "—"."""
    if isinstance(expected, str):
        return " ".join(cell.split()) == " ".join(expected.split())
    values = list(expected) if isinstance(expected, (list, tuple)) else [expected]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return cell.strip() in ("—", "— (1 seed)") or cell.startswith("—")
    tokens = NUMBER.findall(cell)
    if len(tokens) < len(values):
        return False
    return all(abs(numbers(t)[0] - float(v)) <= _tolerance(t) * (1 + 1e-9) + 1e-12 for t, v in zip(tokens, values))


def check_table(rows: list[list[str]], expected: pd.DataFrame, *, keys: list[str], where: str) -> int:
    """Every page row found in `expected` by its `keys` (display headers) and every shown column of
    `expected` compared (`agrees`); every expected row on the page. Returns the cells compared."""
    header = rows[0]
    col = {name: i for i, name in enumerate(header)}
    missing = [k for k in keys if k not in col]
    assert not missing, (where, missing, header)
    index = {tuple(_key(v) for v in r[keys]): r for _, r in expected.iterrows()}
    assert len(rows) - 1 == len(index), (where, len(rows) - 1, len(index))
    compared = 0
    for cells in rows[1:]:
        key = tuple(_key(cells[col[k]]) for k in keys)
        assert key in index, (where, key, list(index)[:5])
        source = index[key]
        for name in expected.columns:
            if name in keys or name not in col:
                continue
            assert agrees(cells[col[name]], source[name]), (where, key, name, cells[col[name]], source[name])
            compared += 1
    return compared


def _key(value: Any) -> Any:
    """A row key as comparable text: "1,024" and 1024 alike, a method name as itself."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(int(value)) if float(value).is_integer() else f"{float(value):g}"
    text = str(value).strip()
    tokens = NUMBER.findall(text)
    if len(tokens) == 1 and tokens[0].strip() == text:
        number = numbers(text)[0]
        return str(int(number)) if number.is_integer() else f"{number:g}"
    return text


def _results(task: str, methods: list[str] | None = None) -> pd.DataFrame:
    frames = [pd.read_csv(p) for m in (methods or METHOD_ORDER)
              if (p := ROOT / "results" / task / f"{m}.csv").is_file()]
    return pd.concat(frames, ignore_index=True)


def _distinct(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per fit: seeds that share a deterministic fit (``fit_seed``) count once."""
    fit = frame["fit_seed"].fillna(frame["seed"]) if "fit_seed" in frame else frame["seed"]
    return frame[~frame.assign(_fit=fit).duplicated(["method", "budget", "_fit"])]


def _mean_sd(values: pd.Series) -> Any:
    values = values.dropna().astype(float)
    if values.empty:
        return [math.nan]
    return [values.mean()] if len(values) == 1 else [values.mean(), values.std(ddof=1)]


def _tables(page: Path) -> list[list[list[str]]]:
    return html_tables(page.read_text())


def _find(page: Path, *headers: str, exact: bool = False) -> list[list[str]]:
    """The first table of `page` whose header row holds every one of `headers` (`exact`: only those)."""
    for rows in _tables(page):
        if all(h in rows[0] for h in headers) and (not exact or len(rows[0]) == len(headers)):
            return rows
    raise AssertionError(f"{page.name}: no table with headers {headers}")


def _metric(task: str) -> str:
    return json.loads((ROOT / "metrics" / task / "headline.json").read_text())["metric"]


# -- the probe and fine-tuning pages -------------------------------------------------------------------------

def _method_summary(frame: pd.DataFrame) -> pd.DataFrame:
    fits = _distinct(frame)
    cols = [c for c in ("accuracy", "macro_f1", "micro_f1", "balanced_accuracy", "auroc", "ece", "train_seconds",
                        "train_flops") if c in fits and fits[c].notna().any()]
    rows = []
    for (method, budget), g in fits.groupby(["method", "budget"]):
        rows.append({"method": method, "labels": int(budget), "seeds": float(g["seed"].nunique()),
                     **{header_text(c): _mean_sd(g[c]) for c in cols}})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("task", TASKS)
def test_every_number_of_the_probe_and_fine_tuning_pages_equals_its_source(task: str) -> None:
    compared = 0
    probe_page = ROOT / "reports" / task / "01-linear-probe.html"
    frozen = _results(task, ["probe", "layer_probe", "classic"])
    compared += check_table(_tables(probe_page)[0], _method_summary(frozen), keys=["method", "labels"],
                            where=probe_page.name)
    for page in sorted((ROOT / "reports" / task).glob("02-finetune-*.html")):
        method = page.stem.removeprefix("02-finetune-")
        runs = _results(task, [method])
        tables = _tables(page)
        compared += check_table(tables[0], _method_summary(runs), keys=["method", "labels"], where=page.name)
        stopping = []
        for budget, g in runs.groupby("budget"):
            stopping.append({"labels": int(budget), "runs": float(len(g)),
                             "epochs seen (min)": float(g["epochs_seen"].min()),
                             "epochs seen (max)": float(g["epochs_seen"].max()),
                             "of which improving at the last round": float(g["still_improving"].astype(bool).sum()),
                             **{f"stopped: {k}": float((g["stop_reason"] == k).sum())
                                for k in runs["stop_reason"].dropna().unique()}})
        expected = pd.DataFrame(stopping)
        shown = _find(page, "runs", "of which improving at the last round")
        for name in [c for c in expected.columns if c.startswith("stopped: ") and c not in shown[0]]:
            assert (expected[name] == 0).all(), (page.name, name)  # a reason no run at any budget had
        compared += check_table(shown, expected, keys=["labels"], where=page.name + " stopping")
    assert compared > 100


# -- the compare page -----------------------------------------------------------------------------------------

def _decision(task: str) -> pd.DataFrame:
    guide = pd.read_csv(ROOT / "results" / task / "decision.csv")
    cols = ["budget", "pick", "pick_mean", "pick_seeds", "pick_gain_over_probe_points", "tied", "expected_loss_points",
            "best", "runner_up", "detectable_points", "pick_build_seconds", "pick_train_flops",
            "pick_serve_seconds_per_1000", "pick_infer_flops_per_row"]
    out = guide[[c for c in cols if c in guide]].copy()
    for c in ("pick", "tied", "best", "runner_up"):
        if c in out:
            out[c] = out[c].fillna("—").astype(str)
    return out.rename(columns=header_text)


def _paired_expected(task: str) -> pd.DataFrame:
    comparisons = pd.read_csv(ROOT / "results" / task / "comparisons.csv")
    cells: dict[str, dict[str, Any]] = {}
    for _, r in comparisons.iterrows():
        if "probe" not in (r["method_a"], r["method_b"]):
            continue
        sign = 1.0 if r["method_a"] != "probe" else -1.0
        method = r["method_a"] if sign > 0 else r["method_b"]
        low, high = sorted((sign * r["ci_low_adj"], sign * r["ci_high_adj"]))
        cells.setdefault(method, {})[f"{int(r['budget'])} labels"] = [sign * r["diff_points"], low, high]
    budgets = sorted({int(k.split()[0]) for c in cells.values() for k in c})
    return pd.DataFrame([{"method − probe": m, **{f"{b} labels": cells[m].get(f"{b} labels", "not run")
                                                  for b in budgets}} for m in METHOD_ORDER if m in cells])


@pytest.mark.parametrize("task", TASKS)
def test_every_number_of_the_compare_page_equals_its_source(task: str) -> None:
    page = ROOT / "reports" / task / "03-compare.html"
    results, metric = _results(task), _metric(task)
    compared = check_table(_find(page, "pick", "runner-up"), _decision(task), keys=["labels"], where="decision")

    fits = _distinct(results)
    curve = fits.groupby(["method", "budget"])[metric].agg(["mean", "std", "count"]).reset_index()
    curve = curve.rename(columns={"budget": "labels"}).astype({"count": float})
    compared += check_table(_find(page, "method", "mean", "std", "count"), curve, keys=["method", "labels"],
                            where="learning curve")

    paired = _paired_expected(task)
    shown = _find(page, "method − probe")
    shown = [[shown[0][0], *(f"{int(NUMBER.findall(h)[0].replace(',', ''))} labels" for h in shown[0][1:])],
             *shown[1:]]
    compared += check_table(shown, paired, keys=["method − probe"], where="paired")

    headline = json.loads((ROOT / "metrics" / task / "headline.json").read_text())
    crossing = pd.DataFrame([{"method": m, "crossing budget": "none" if b is None else float(b)}
                             for m, b in headline["crossing_budget"].items()])
    compared += check_table(_find(page, "method", "crossing budget"), crossing, keys=["method"], where="crossing")

    cols = [c for c in ("train_seconds", "train_flops", "infer_flops_per_row", "peak_mem_mib", "trainable_params")
            if c in results]
    med = results.groupby(["method", "budget"])[cols].median().reset_index()
    ref = med[med["method"] == "probe"].set_index("budget")
    for c in cols:
        med[f"{c}_x_probe"] = [r[c] / ref.loc[r["budget"], c] if r["budget"] in ref.index and ref.loc[r["budget"], c]
                               else math.nan for _, r in med.iterrows()]
    compared += check_table(_find(page, "method", header_text("peak_mem_mib")), med.rename(columns=header_text),
                            keys=["method", "labels"], where="costs")

    curves_dir = ROOT / "results" / task / "curves"
    curves = pd.concat([pd.read_csv(p) for p in sorted(curves_dir.glob("*.csv"))], ignore_index=True)
    best = curves.loc[curves.groupby(["method", "seed", "budget"])["val_metric"].idxmax()]
    best = best.assign(gap=100 * (best["train_metric"] - best["val_metric"]))
    gap = best.groupby(["method", "budget"])["gap"].agg(["mean", "std"]).reset_index()
    gap = gap.rename(columns={"budget": "labels", "mean": header_text("gap_points"), "std": header_text("gap_std")})
    compared += check_table(_find(page, header_text("gap_points")), gap, keys=["method", "labels"], where="gap")

    if "ece" in results and results["ece"].notna().any():
        largest = results[results["budget"] == results["budget"].max()]
        ece = largest.groupby("method")["ece"].agg(["mean", "std"]).reset_index()
        compared += check_table(_find(page, "method", "mean", "std", exact=True), ece, keys=["method"],
                                where="calibration")

    hparams = pd.read_csv(ROOT / "results" / task / "hparams.csv")
    shown = _find(page, "hyperparameter", "value")
    assert len(shown) - 1 == len(hparams), task
    col = {name: i for i, name in enumerate(shown[0])}
    for cells, (_, r) in zip(shown[1:], hparams.iterrows()):  # the page keeps the file's order
        for name in hparams.columns:
            h = header_text(name)
            if h not in col:
                continue
            v = r[name]
            flag = isinstance(v, (bool, np.bool_)) or (name in FLAG_COLUMNS and pd.notna(v) and v in (0, 1))
            expected = (("yes" if v else "no") if flag
                        else v if isinstance(v, str) else float(v) if pd.notna(v) else math.nan)
            assert agrees(cells[col[h]], expected), ("hparams", h, cells[col[h]], v)
            compared += 1

    drops = pd.read_csv(ROOT / "results" / task / "shift_drops.csv")
    if len(drops):
        mean = drops.groupby(["budget", "shift", "method"])["drop_points"].mean().unstack("method").reset_index()
        mean = mean.rename(columns={"budget": "labels"})
        compared += check_table(_find(page, "labels", "shift", "probe"), mean, keys=["labels", "shift"], where="shift")
        shift = pd.read_csv(ROOT / "results" / task / "shift_compare.csv")
        shift["significant"] = shift["significant"].map(lambda v: "yes" if v else "no")
        compared += check_table(_find(page, "reference", header_text("diff_drop_points")),
                                shift.rename(columns=header_text),
                                keys=["method", "reference", "labels", "shift"], where="shift compare")
    assert compared > 300, compared


# -- the summary page and the index ---------------------------------------------------------------------------

def _summary_expected(task: str) -> pd.DataFrame:
    headline = json.loads((ROOT / "metrics" / task / "headline.json").read_text())
    results = _distinct(_results(task))
    metric, budget = headline["metric"], int(headline["budget"])
    all_budget = int(headline.get("all_labels", {}).get("budget", results["budget"].max()))
    rows = []
    for method in [m for m in METHOD_ORDER if m in set(results["method"])]:
        at = results[(results["method"] == method) & (results["budget"] == budget)]
        at_all = results[(results["method"] == method) & (results["budget"] == all_budget)]
        row = {"task": task, "method": method, "metric at headline labels": [*_mean_sd(at[metric]), len(at)],
               "metric at all labels": [*_mean_sd(at_all[metric]), len(at_all)] if len(at_all) else "not run",
               "headline labels": float(budget),
               "drop under shift (points)": headline.get("shift_drop_points", {}).get(method, "no shift scores")}
        if len(at_all) == 1:
            row["metric at all labels"] = [float(at_all[metric].iloc[0]), 1.0]
        if len(at) == 1:
            row["metric at headline labels"] = [float(at[metric].iloc[0]), 1.0]
        rows.append(row)
    return pd.DataFrame(rows)


def test_every_number_of_the_summary_page_and_the_index_equals_its_source() -> None:
    compared = 0
    summary = ROOT / "reports" / "summary.html"
    expected = pd.concat([_summary_expected(t) for t in TASKS], ignore_index=True)
    compared += check_table(_find(summary, "task", "method", "metric at headline labels"), expected,
                            keys=["task", "method"], where="summary table")
    guides = pd.concat([_decision(t).assign(task=t) for t in TASKS], ignore_index=True)
    compared += check_table(_find(summary, "task", "pick", "runner-up"), guides, keys=["task", "labels"],
                            where="summary guide")

    index = ROOT / "reports" / "index.html"
    rows = []
    for task in TASKS:
        headline = json.loads((ROOT / "metrics" / task / "headline.json").read_text())
        rows.append({"task": task, "labels": float(headline["budget"]),
                     **{m: [v["mean"], v["std"]] if v.get("std") is not None and not math.isnan(v["std"])
                        else [v["mean"]] for m, v in headline["methods"].items()}})
    compared += check_table(_find(index, "task", "metric", "labels", "probe"), pd.DataFrame(rows), keys=["task"],
                            where="index headline")
    # the README's generated block holds the same headline table, in markdown
    block = (ROOT / "README.md").read_text().split("<!-- results:begin")[1].split("<!-- results:end -->")[0]
    lines = [line for line in block.splitlines() if line.startswith("| task | metric | labels |")]
    assert len(lines) == 1, "the README's headline table is missing"
    table = block.split(lines[0])[1].split("\n\n")[0].strip().splitlines()[1:]  # below the separator row
    readme = [[c.strip() for c in lines[0].strip("| ").split(" | ")]] + \
             [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in table]
    compared += check_table(readme, pd.DataFrame(rows), keys=["task"], where="README headline")
    decision_tables = [rows for rows in _tables(index) if "pick" in rows[0] and "labels" in rows[0]
                       and "task" not in rows[0]]
    paired_tables = [rows for rows in _tables(index) if rows[0][0] == "method − probe"]
    shown_tasks = re.findall(r"<h2 id='([^']+)'>", index.read_text())  # the index's order: params.yaml's
    assert sorted(shown_tasks) == TASKS and len(decision_tables) == len(paired_tables) == len(TASKS)
    for task, decision, paired in zip(shown_tasks, decision_tables, paired_tables):
        compared += check_table(decision, _decision(task), keys=["labels"], where=f"index decision {task}")
        shown = [[paired[0][0], *(f"{int(NUMBER.findall(h)[0].replace(',', ''))} labels" for h in paired[0][1:])],
                 *paired[1:]]
        compared += check_table(shown, _paired_expected(task), keys=["method − probe"], where=f"index paired {task}")
    assert compared > 200, compared


def test_a_shown_number_agrees_within_its_rounding_and_a_power_of_ten_off_does_not() -> None:
    assert agrees("1.76 M", 1.7649e6) and not agrees("1.76 M", 1.76e5) and not agrees("1.76 M", 1.77e6)
    assert agrees("340", 341.7) and not agrees("340", 34.0) and agrees("10,199", 10199) and not agrees("10,199", 1020)
    assert agrees("0.743 ± 0.020 (10 seeds)", [0.7431, 0.0204, 10]) and not agrees("0.743 ± 0.020", [0.7441, 0.02])
    assert agrees("1.0e-05", 1.04e-5) and not agrees("1.0e-05", 1.0e-4) and agrees("+5.3 [+2.3, +8.3]*", [5.27, 2.3, 8.34])
    assert agrees("—", math.nan) and not agrees("0.1", math.nan) and agrees("full", "full") and not agrees("lora", "full")
