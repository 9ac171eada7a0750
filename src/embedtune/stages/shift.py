"""Stage `shift`: the shift test sets of one task, built from its clean test split (never used for selection)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..data import load_prepared
from ..params import Params, task_kind
from ..paths import TaskPaths
from ..shift import build_shift_sets, default_kinds, write_shift_sets


def shift_kinds(params: Params, task: str) -> tuple[str, ...]:
    """The task's declared shift kinds, or its kind's default (text → text_perturb, image → image_corrupt)."""
    task_params = params.task(task)
    return task_params.shift if task_params.shift is not None else default_kinds(task_kind(task_params))


def run(params: Params, task: str, *, root: Path = Path(".")) -> list[Any]:
    """Write ``data/shift/<task>/`` (``sets.json`` + one file per set); graded sets record the clean test
    rows they perturb (``test_rows``), chosen with ``shift.seed``. Returns the sets."""
    paths = TaskPaths(root, task)
    data = load_prepared(paths.prepared)
    cfg = params.scale.shift
    test = data.splits["test"]
    sets = build_shift_sets(shift_kinds(params, task), test_x=test.x, test_y=test.y, data_root=params.data_root,
                            label_map=params.task(task).label_map, label_names=data.label_names,
                            text_strengths=cfg.text_strengths, severities=cfg.severities, max_rows=cfg.max_rows,
                            seed=cfg.seed)
    write_shift_sets(sets, paths.shift)
    print(f"{task}: {len(sets)} shift sets")
    return sets


if __name__ == "__main__":
    from ..entry import stage_main

    sys.exit(stage_main(run, doc=__doc__))
