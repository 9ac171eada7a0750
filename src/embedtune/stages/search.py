"""Stage `search`: one tuned method's learning-rate search on one task, at each pilot budget (one seed).

Protocol (`runs` docstring): the method's ``finetune.lr_grid`` (images: × ``image_lr_scale``), extended at
an edge by ×``lr_step`` up to ``grid_extensions`` times (`gridsearch.grid_search`), each value one run
without restarts, scored on the shared selection rows. A rate whose run ended below the model it started
from (`wrecked`: too high a rate) loses to every other; when every rate did, the search goes on below its
smallest rate (÷ ``lr_step``: the grid's edge extensions, then at most ``lr_restarts``
more; `search_rates`). A run uses the pick at the nearest searched budget."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..gridsearch import grid_search
from ..io import seed_everything, write_csv
from ..params import Params
from ..paths import TaskPaths
from ..plan import method_lr_grid
from ..runs import resolve_budget, run_one, stage_context
from ..store import RunStore


def wrecked(row: dict[str, Any]) -> bool:
    """A rate too high for the search to pick: the run ended below the model it started from on the selection
    rows (lp_ft's probe head, a fresh head's chance level). A run that is merely short of steps (its loss fell
    less than the restart rule asks) is not: a lower rate would learn even less in the same steps."""
    start = row.get("start_val_score")
    return start is not None and not math.isnan(float(start)) and float(row["val_score"]) < float(start)


def search_rates(train: Callable[[float], dict[str, Any]], grid: tuple[float, ...], *, step: float,
                 extensions: int, below: int) -> dict[Any, Any]:
    """Every tried rate's run (`train(lr)` → a run with its ``row``) and, under ``"found"``, the grid search's
    result. A rate whose run ended below its start (`wrecked`) scores −inf, so it loses to every other rate;
    among rates that all wrecked their start the smallest is picked (ties go to the smaller value) and the
    grid's own edge extension already goes below it; when still every rate did, up to `below` more rates
    ÷ `step` are tried."""
    runs: dict[Any, Any] = {}

    def evaluate(lr: float) -> float:
        if lr not in runs:  # a second pass over the tried rates trains nothing again
            runs[lr] = train(lr)
        row = runs[lr]["row"]
        return -math.inf if wrecked(row) else row["val_score"]

    found = grid_search(evaluate, grid, step=step, extensions=extensions)
    for _ in range(below):
        if not all(wrecked(r["row"]) for r in runs.values()):
            break
        found = grid_search(evaluate, (*runs, min(runs) / step), step=step, extensions=0)
    return {**runs, "found": found}


def run(params: Params, task: str, method: str, *, root: Path = Path("."), progress: bool = True) -> pd.DataFrame:
    """Write ``results/<task>/hparams/<method>.csv`` (every tried LR, its selection score, the pick)."""
    seed_everything(0)
    ctx = stage_context(params, task, method, root=root, progress=progress)
    RunStore(root, task, method).stage_folder("search").mkdir(parents=True, exist_ok=True)  # a declared output
    ft = params.scale.finetune
    frames = []
    for budget in sorted({resolve_budget(ctx, b) for b in ft.search_budgets}):
        runs = search_rates(lambda lr, budget=budget: run_one(ctx, seed=ft.search_seed, budget=budget, lr=lr,
                                                              progress=progress, restarts=0, stage="search"),
                            method_lr_grid(params, task, method), step=ft.lr_step, extensions=ft.grid_extensions,
                            below=ft.lr_restarts)
        found = runs.pop("found")
        frames.append(pd.DataFrame([{
            "method": method, "hyperparameter": "lr", "value": lr, "val_score": runs[lr]["row"]["val_score"],
            "learned": bool(runs[lr]["row"].get("learned", True)),
            "chosen": lr == found["chosen"], "edge_limited": found["edge_limited"], "budget": budget,
            "seed": ft.search_seed, "n_val": len(ctx.val.y), "still_improving": runs[lr]["row"]["still_improving"],
            "train_seconds": runs[lr]["row"]["train_seconds"], "steps": runs[lr]["row"]["steps"]}
            for lr, _ in found["path"]]))
    frame = pd.concat(frames, ignore_index=True)
    write_csv(TaskPaths(root, task).hparams(method), frame)
    print(frame.to_string(index=False))
    return frame


if __name__ == "__main__":
    from ..entry import stage_main

    sys.exit(stage_main(run, doc=__doc__, method=True))
