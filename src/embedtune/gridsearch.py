"""One grid search with edge extension, used by the classic floor and the probe (C) and by the tuned
methods' learning-rate search: evaluate every grid value; while the best sits at an edge of what was
tried, add the next value ×`step` beyond that edge, at most `extensions` times."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def grid_search(evaluate: Callable[[float], float], grid: tuple[float, ...], *, step: float,
                extensions: int) -> dict[str, Any]:
    """Returns ``{"path": [(value, score), ...] by value, "chosen": value, "edge_limited": bool}``.

    Ties go to the smaller value (the lower learning rate, the stronger regulariser C). A one-value grid is
    not extended (no edge tells which way). `edge_limited`: the pick is still at an edge of the extended grid.
    `evaluate` is called in the order values are tried (ascending grid, then each extension), so a
    warm-started path can start each fit from the nearest value already tried."""
    if not grid:
        raise ValueError("grid_search: empty grid; give at least one value")
    scores = {float(v): float(evaluate(float(v))) for v in sorted(grid)}

    def best() -> float:
        return max(scores, key=lambda v: (scores[v], -v))

    for _ in range(extensions):
        values, pick = sorted(scores), best()
        if len(values) == 1 or pick not in (values[0], values[-1]):
            break
        nxt = pick / step if pick == values[0] else pick * step
        scores[nxt] = float(evaluate(nxt))
    values, pick = sorted(scores), best()
    return {"path": [(v, scores[v]) for v in values], "chosen": pick,
            "edge_limited": len(values) > 1 and pick in (values[0], values[-1])}


def nearest(tried: dict[float, Any], value: float) -> Any | None:
    """The entry of `tried` whose key is nearest to `value` on a log scale (a warm start); None when empty."""
    import math

    if not tried:
        return None
    return tried[min(tried, key=lambda v: abs(math.log(v) - math.log(value)))]
