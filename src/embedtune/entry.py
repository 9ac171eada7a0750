"""Command-line entry shared by the stage modules and the notebook renderer: ``--params``, ``--root``,
``--task`` / ``--method``; bad input exits 2 with one line that says what was wrong (no traceback)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .params import ParamsError


def stage_main(run: Callable[..., Any], *, doc: str, method: bool = False, per_task: bool = True,
               argv: list[str] | None = None) -> int:
    """Parse the stage's arguments, load params.yaml and call ``run(params, [task, [method,]] root=...)``."""
    from .params import check_method, load_params

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--root", type=Path, default=Path("."), help="where data/, results/, reports/ go")
    if per_task:
        parser.add_argument("--task", required=True)
    if method:
        parser.add_argument("--method", required=True)
    args = parser.parse_args(argv)

    def call() -> Any:
        params = load_params(args.params)
        positional = [params] + ([args.task] if per_task else []) + ([check_method(args.method)] if method else [])
        return run(*positional, root=args.root)

    return guarded(call)


def guarded(call: Callable[[], Any]) -> int:
    """Run `call`; a known bad-input error becomes one line on stderr and exit status 2."""
    try:
        call()
    except (ParamsError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # papermill wraps notebook errors; show the cause, not the traceback
        if type(exc).__name__ == "PapermillExecutionError":
            print(f"error: notebook failed: {getattr(exc, 'ename', '')}: {getattr(exc, 'evalue', exc)}",
                  file=sys.stderr)
            return 2
        raise
    return 0
