"""What the tuned stages plan: the learning-rate grid a search tries, which searched pick a run uses, and
which (seed, budget) runs a method makes (protocol: `runs` docstring, steps 2 and 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .params import Params, task_kind


def method_lr_grid(params: Params, task: str, method: str) -> tuple[float, ...]:
    ft = params.scale.finetune
    grid = tuple(sorted(ft.lr_grid[method]))
    if task_kind(params.task(task)) == "image" and method != "lora":
        grid = tuple(v * ft.image_lr_scale for v in grid)  # CNN fine-tuning takes ~10× a transformer's LR
    return grid


def nearest_searched(budget: int, searched: list[int]) -> int:
    """The searched budget nearest `budget` on a log scale (ties → the smaller): whose LR pick a run uses."""
    import math

    return min(searched, key=lambda s: (abs(math.log(budget) - math.log(s)), s))


def chosen_lr(path: Path, method: str, *, budget: int) -> float:
    """The learning rate a run at `budget` uses (module docstring, step 2)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run the search stage first: dvc repro search")
    frame = pd.read_csv(path)
    at = frame[frame["budget"] == nearest_searched(budget, sorted({int(b) for b in frame["budget"]}))]
    picked = at[at["chosen"].astype(bool)]
    if len(picked) != 1:
        raise ValueError(f"{path}: expected one chosen learning rate for {method} at budget "
                         f"{int(at['budget'].iloc[0])}, found {len(picked)}")
    return float(picked["value"].iloc[0])


def tuned_runs(subsets: dict[str, Any]) -> list[tuple[int, int]]:
    """(seed, budget) pairs the tuned methods run: ``seeds_by_size`` from `stages.prepare` (every seed at
    the shared sizes, the first n at the larger ones), ordered by budget then seed."""
    by_size = subsets.get("seeds_by_size")
    if by_size is None:  # written before seeds_by_size existed: the first seed at the single-seed sizes
        by_size = {str(b): subsets["seeds"] for b in subsets["shared_sizes"]}
        by_size.update({str(b): subsets["seeds"][:1] for b in subsets.get("single_seed_sizes", [])})
    runs = {(int(seed), int(budget)) for budget, seeds in by_size.items() for seed in seeds}
    return sorted(runs, key=lambda r: (r[1], r[0]))
