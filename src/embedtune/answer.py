"""The answer grid: `tables.answer_table` folded for the top of a page (one row per label budget, one column per
task: the pick, its gain over the probe, its test score, what it ties with and its cost against the probe), as
HTML and as markdown, with the headline's caption. It sits under the headline figure (`headline`) on the index,
the summary page and the README."""

from __future__ import annotations

import html

import pandas as pd

METRIC_LABELS = {"accuracy": "accuracy", "auroc": "AUROC", "macro_f1": "macro-F1", "micro_f1": "micro-F1",
                 "balanced_accuracy": "balanced accuracy"}  # a metric as a reader names it
GRID_COST = "cost × probe: build s / FLOPs · serve s / FLOPs"


def answer_grid(answer: pd.DataFrame) -> pd.DataFrame:
    """`tables.answer_table` folded for the top of a page: one row per label budget (a task's whole train
    split is the row "all"), one column per task, each cell three lines — the pick with its gain over the
    probe (points, interval, * = it excludes 0), its test score and the methods tied with the best, and its
    cost relative to the probe (build and serve, seconds and FLOPs). Cells are lists of lines."""
    if answer.empty:
        return pd.DataFrame()
    tasks = list(dict.fromkeys(answer["task"]))
    order: list[str] = []
    columns: dict[str, dict[str, list[str]]] = {}
    for task in tasks:
        part = answer[answer["task"] == task]
        metric = str(part["metric"].iloc[0])
        header = f"{task}: {METRIC_LABELS.get(metric, metric)} (all = {part['labels'].iloc[-1]} labels)"
        cells: dict[str, list[str]] = {}
        for i, (_, r) in enumerate(part.iterrows()):
            row = "all" if i == len(part) - 1 else str(r["labels"])
            gain = r["gain over probe (points)"]
            cells[row] = [f"{r['pick']} " + ("(the reference)" if gain == "—" else gain),
                          f"test {r['test score']} · ties: {r['tied with the best']}",
                          f"build {r['build × probe (s)']} s / {r['build × probe (FLOPs)']} FLOPs · "
                          f"serve {r['serve × probe (s)']} s / {r['serve × probe (FLOPs)']} FLOPs"]
            if row not in order:
                order.append(row)
        columns[header] = cells
    order = sorted((r for r in order if r != "all"), key=lambda r: int(r.replace(",", ""))) + ["all"]
    return pd.DataFrame([{"labels": row, **{h: c.get(row, ["not run"]) for h, c in columns.items()}}
                         for row in order])


LEFT = "text-align:left;vertical-align:top"  # inline: a notebook page's own CSS right-aligns cells


def answer_grid_html(grid: pd.DataFrame) -> str:
    """The grid as an HTML table: one line per <div>, the pick in bold."""
    if grid.empty:
        return "<p>No results yet.</p>"
    head = "".join(f"<th style='{LEFT}'>{html.escape(str(c))}</th>" for c in grid.columns)
    body = []
    for _, r in grid.iterrows():
        cells = [f"<th>{html.escape(str(r['labels']))}</th>"]
        for c in grid.columns[1:]:
            first, *rest = r[c]
            pick, _, gain = first.partition(" ")
            if pick.endswith("†") or gain.startswith("†"):  # "full †": the flag stays with the name
                pick, gain = f"{pick} †", gain.removeprefix("† ")
            lines = [f"<div><b>{html.escape(pick)}</b> {html.escape(gain)}</div>",
                     *(f"<div class='sub'>{html.escape(line)}</div>" for line in rest)]
            cells.append(f"<td style='{LEFT}'>" + "".join(lines) + "</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table class='answer'><caption>{html.escape(GRID_COST)}</caption><tr>{head}</tr>"
            + "".join(body) + "</table>")


def answer_grid_markdown(grid: pd.DataFrame) -> str:
    """The grid as a GitHub markdown table, the lines of a cell joined with <br>."""
    if grid.empty:
        return ""
    lines = ["| " + " | ".join(str(c) for c in grid.columns) + " |", "|" + "---|" * len(grid.columns)]
    for _, r in grid.iterrows():
        lines.append("| " + " | ".join([str(r["labels"]), *("<br>".join(r[c]) for c in grid.columns[1:])]) + " |")
    return "\n".join(lines)


def answer_caption(info: dict[str, str]) -> str:
    """The headline's caption: what ran (backbones, hardware, profile), then what the figure shows."""
    return (f"Backbones: {info.get('backbones', '—')}. Run store: {info.get('hardware', info.get('machine', '—'))}; "
            f"profile {info.get('profile', '—')}. {ANSWER_FIGURE_TEXT} {ANSWER_TABLE_TEXT}")


def answer_block_html(answer: pd.DataFrame) -> str:
    """The grid and, where a pick carries the †, its footnote: the answer as the summary page shows it."""
    from .tables import answer_note

    note = answer_note(answer)
    return answer_grid_html(answer_grid(answer)) + (f"<p>{note}</p>" if note else "")


ANSWER_FIGURE_TEXT = ("Figure: gain of each method over the frozen probe (points of the task's main metric, test split, "
                      "mean over seeds; bars: simultaneous 95% intervals over the comparisons with the probe, cut at the "
                      "panel's edge with an arrowhead where wider); a black ring marks the pick, decided on the "
                      "selection rows.")
ANSWER_TABLE_TEXT = ("Table: per label budget and task, the pick — among the methods tied with the best on the selection "
                     "rows, the cheapest to build whose expected loss against the best is within the margin, else the "
                     "best — with its gain over the probe (points, simultaneous 95% interval; * = it excludes 0), its "
                     "test score and the methods tied with the best, and its cost relative to the probe.")
