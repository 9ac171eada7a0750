"""The headline figure: per task and label budget, each method's gain over the frozen probe with the
simultaneous intervals the pages show, and the pick (decided on the selection rows) ringed. It sits above the
answer grid (`answer`) on the index, the summary page and the README."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .answer import METRIC_LABELS
from .registry import COLORS, MARKERS, METHOD_ORDER
from .reports import MAX_FIGURE_INCHES, plt
from .tables import count_text, vs_probe


def gain_rows(comparisons: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """Rows (method, budget, gain, low, high): each method − probe in points with its interval (simultaneous
    over the probe family where compare wrote one, else the pairwise one)."""
    rows = []
    for method in [m for m in METHOD_ORDER if m != "probe"]:
        for budget in budgets:
            row = vs_probe(comparisons, method, budget)
            if row is None:
                continue
            adjusted = "ci_low_adj" in row and pd.notna(row["ci_low_adj"])
            low, high = (row["ci_low_adj"], row["ci_high_adj"]) if adjusted else (row["ci_low"], row["ci_high"])
            rows.append({"method": method, "budget": budget, "gain": float(row["diff_points"]),
                         "low": float(low), "high": float(high)})
    return pd.DataFrame(rows, columns=["method", "budget", "gain", "low", "high"])


def _clip_wide_intervals(ax: Any, gains: Any, x: list[float]) -> None:
    """Keep the panel on the estimates: the y range spans them and 0 plus the median interval half-width (at
    least 5 points); an interval that runs past an edge is cut there and ends in an arrowhead (▲/▼)."""
    import numpy as np

    if gains.empty:
        return
    pad = max(5.0, float(np.median(gains["high"] - gains["low"])) / 2)
    low, high = min(float(gains["gain"].min()), 0.0) - pad, max(float(gains["gain"].max()), 0.0) + pad
    ax.set_ylim(low, high)
    for xi, lo, hi in zip(x, gains["low"], gains["high"]):
        if hi > high:
            ax.plot([xi], [high], marker="^", color="black", ms=4, clip_on=False)
        if lo < low:
            ax.plot([xi], [low], marker="v", color="black", ms=4, clip_on=False)


def answer_figure(per_task: dict[str, dict[str, Any]]) -> Any:
    """One panel per task: x = label budget, y = gain over the probe (points of the task's main metric, test
    split, mean over seeds, interval bars); 0 is the probe; a black ring marks the pick at each budget."""
    tasks = [t for t in per_task if not per_task[t]["guide"].empty]
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(min(3.3 * max(len(tasks), 1), MAX_FIGURE_INCHES), 3.0),
                             squeeze=False, sharey=False)
    handles: dict[str, Any] = {}
    for ax, task in zip(axes[0], tasks):
        t = per_task[task]
        budgets = sorted(int(b) for b in t["guide"]["budget"])
        gains = gain_rows(t["comparisons"], budgets)
        methods = [m for m in METHOD_ORDER if m in set(gains["method"])]
        width = 0.7 / max(len(methods), 1)
        position = {m: (i - (len(methods) - 1) / 2) * width for i, m in enumerate(methods)}
        ax.axhline(0, color=COLORS["probe"], lw=1.2, ls="--")
        handles["probe"] = ax.lines[-1]
        for method in methods:
            part = gains[gains["method"] == method]
            x = [budgets.index(b) + position[method] for b in part["budget"]]
            bars = ax.errorbar(x, part["gain"], yerr=[part["gain"] - part["low"], part["high"] - part["gain"]],
                               fmt=MARKERS[method], color=COLORS[method], ms=5.5, capsize=2, lw=1, label=method)
            handles[method] = bars
        for _, r in t["guide"].iterrows():
            pick, i = str(r["pick"]), budgets.index(int(r["budget"]))
            if pick == "probe":
                x, y = i, 0.0
            else:
                hit = gains[(gains["method"] == pick) & (gains["budget"] == int(r["budget"]))]
                if hit.empty:
                    continue
                x, y = i + position[pick], float(hit["gain"].iloc[0])
            handles["pick"] = ax.scatter([x], [y], s=190, facecolors="none", edgecolors="black", linewidths=1.4,
                                         zorder=5, label="pick")
        _clip_wide_intervals(ax, gains, [budgets.index(b) + position[m] for m, b in zip(gains["method"], gains["budget"])])
        ax.set_xticks(range(len(budgets)), [count_text(b) for b in budgets])
        ax.set_title(f"{task} ({METRIC_LABELS.get(t['headline']['metric'], t['headline']['metric'])})")
        ax.set_xlabel("labelled examples")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("gain over the probe (points)")
    order = [k for k in ("probe", *(m for m in METHOD_ORDER if m != "probe"), "pick") if k in handles]
    labels = {"probe": "probe (0)", "pick": "pick (selection rows)"}
    fig.legend([handles[k] for k in order], [labels.get(k, k) for k in order], loc="lower center",
               ncol=len(order), frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig

