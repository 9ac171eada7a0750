"""Stage `search`: one tuned method's learning-rate search on one task, at each pilot budget (one seed).

Protocol (`runs` docstring): the method's ``finetune.lr_grid`` (images: × ``image_lr_scale``), extended at
an edge by ×``lr_step`` up to ``grid_extensions`` times (`gridsearch.grid_search`), each value one run
without restarts, scored on the shared selection rows. A rate whose run did not learn (`outputs.learned`:
its loss did not fall, or it ended no better than its start) loses to every rate that did; when none did,
the search goes on below its smallest rate (÷ ``lr_step``, at most ``lr_restarts`` times). A run uses the
pick at the nearest searched budget."""

from __future__ import annotations

import math
import sys
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


def run(params: Params, task: str, method: str, *, root: Path = Path("."), progress: bool = True) -> pd.DataFrame:
    """Write ``results/<task>/hparams/<method>.csv`` (every tried LR, its selection score, the pick)."""
    seed_everything(0)
    ctx = stage_context(params, task, method, root=root, progress=progress)
    RunStore(root, task, method).stage_folder("search").mkdir(parents=True, exist_ok=True)  # a declared output
    ft = params.scale.finetune
    frames = []
    for budget in sorted({resolve_budget(ctx, b) for b in ft.search_budgets}):
        runs: dict[float, dict[str, Any]] = {}

        def evaluate(lr: float, budget: int = budget, runs: dict = runs) -> float:
            if lr not in runs:  # a second pass over the tried rates (below) trains nothing again
                runs[lr] = run_one(ctx, seed=ft.search_seed, budget=budget, lr=lr, progress=progress, restarts=0,
                                   stage="search")
            row = runs[lr]["row"]
            # a rate that did not learn (outputs.learned) loses to every rate that did
            return row["val_score"] if row.get("learned", True) else -math.inf

        grid = method_lr_grid(params, task, method)
        found = grid_search(evaluate, grid, step=ft.lr_step, extensions=ft.grid_extensions)
        for _ in range(ft.lr_restarts):  # every rate failed: go on below the smallest, as a run's restart does
            if any(runs[lr]["row"].get("learned", True) for lr in runs):
                break
            found = grid_search(evaluate, (*runs, min(runs) / ft.lr_step), step=ft.lr_step, extensions=0)
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
