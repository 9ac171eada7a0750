"""`make smoke`: the real pipeline (`dvc repro`) on the smoke profile, in a scratch copy of the tracked files,
so nothing of the committed run changes. Prints where the reports are and how long it took.

    python scripts/smoke.py          # one task per domain kind (the first declared text and image task),
                                     # every method: each method's and each data kind's code path once
    python scripts/smoke.py --all    # every declared task (`make smoke-all`)

The scratch copy is ``.scratch/smoke/`` (``.scratch/smoke-all/`` with ``--all``); a second call reuses what
DVC finished there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

from embedtune import scratch
from embedtune.params import load_params, task_kind


def smoke_tasks(tasks: dict[str, dict], kinds: dict[str, str], *, every: bool) -> dict[str, dict]:
    """The tasks a smoke run covers: all of them, or the first declared task of each kind (text, image)."""
    if every:
        return dict(tasks)
    chosen: dict[str, dict] = {}
    for name, spec in tasks.items():
        if kinds[name] not in {kinds[c] for c in chosen}:
            chosen[name] = spec
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every declared task (default: one per kind)")
    args = parser.parse_args(argv)
    work = scratch.REPO / ".scratch" / ("smoke-all" if args.all else "smoke")
    scratch.copy_tracked(work)
    raw = yaml.safe_load((work / "params.yaml").read_text())
    raw["profile"] = "smoke"
    raw["data_root"] = os.environ.get("EMBEDTUNE_DATA_ROOT", str((scratch.REPO / "../shared/data").resolve()))
    params = load_params(work / "params.yaml")
    kinds = {name: task_kind(params.task(name)) for name in raw["tasks"]}
    raw["tasks"] = smoke_tasks(raw["tasks"], kinds, every=args.all)
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    print(f"smoke: tasks {', '.join(raw['tasks'])}; methods {', '.join(raw['methods'])}; in {work}")
    start = time.perf_counter()
    done = scratch.repro(work, capture=False)
    minutes = (time.perf_counter() - start) / 60
    if done.returncode == 0:
        print(f"smoke run done in {minutes:.1f} min: {Path(work, 'reports', 'index.html')}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
