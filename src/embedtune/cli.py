"""Project commands beside the stages (which dvc.yaml runs as ``python -m embedtune.stages.<name>`` or through
their notebooks, ``python -m embedtune.notebook``):

    python -m embedtune.cli set-profile cpu      # the active profile in params.yaml
    python -m embedtune.cli validate             # check params.yaml
    python -m embedtune.cli prepare --task legal # any stage by hand: prepare, shift, embed, search (--method)
    python -m embedtune.cli notebook 03-compare --task legal   # a stage with a report, by its notebook
    accelerate launch ... -m embedtune.cli finetune --task legal --method full   # scale out one stage's runs

Every command exits non-zero with one clear message (no traceback) on bad input, and writes nothing then.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from .entry import guarded
from .params import PROFILES, ParamsError, check_method, load_params


def set_profile(params_path: Path, profile: str) -> None:
    """Rewrite the top-level `profile:` line of params.yaml (comments kept)."""
    if profile not in PROFILES:
        raise ParamsError(f"profile: bad value {profile!r}; allowed values: {list(PROFILES)}")
    text = params_path.read_text()
    new, count = re.subn(r"(?m)^profile:\s*\S+", f"profile: {profile}", text, count=1)
    if count != 1:
        raise ParamsError(f"{params_path}: no top-level 'profile:' line to set")
    if new != text:  # unchanged profile: the file stays byte-identical (and DVC sees no change)
        from .io import write_text

        write_text(params_path, new)


def finetune(params_path: Path, root: Path, *, task: str, method: str) -> None:
    """One tuned method's runs without the notebook (its LR search first when missing); under ``accelerate
    launch`` every process trains its shard and rank 0 writes. `dvc repro` then renders the stage from the
    run cache."""
    from .paths import TaskPaths
    from .stages import finetune as finetune_stage
    from .stages import search as search_stage

    check_method(method)
    params = load_params(params_path)
    if not TaskPaths(root, task).hparams(method).is_file():
        search_stage.run(params, task, method, root=root)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # rank 0 writes the pick; the others wait for it
            from accelerate import PartialState

            PartialState().wait_for_everyone()
    out = finetune_stage.run(params, task, method, root=root)
    print(out["results"].to_string(index=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embedtune", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--root", type=Path, default=Path("."), help="where data/, results/, reports/ go")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("set-profile", help="set the active profile in params.yaml")
    p.add_argument("profile")
    sub.add_parser("validate", help="validate params.yaml and print the active profile")
    p = sub.add_parser("finetune", help="one tuned method's runs without the notebook (scale-out path)")
    p.add_argument("--task", required=True)
    p.add_argument("--method", required=True)
    for name in ("prepare", "shift", "embed", "search"):
        p = sub.add_parser(name, help=f"run the {name} stage (embedtune.stages.{name}.run)")
        p.add_argument("--task", required=True)
        if name == "search":
            p.add_argument("--method", required=True)
    p = sub.add_parser("notebook", help="render a stage's notebook (embedtune.notebook)")
    p.add_argument("name")
    p.add_argument("--task")
    p.add_argument("--method")
    args = parser.parse_args(argv)

    def call() -> None:
        if args.command == "set-profile":
            set_profile(args.params, args.profile)
        elif args.command == "validate":
            params = load_params(args.params)
            print(f"params OK; profile {params.profile}; tasks {sorted(params.tasks)}")
        elif args.command == "finetune":
            finetune(args.params, args.root, task=args.task, method=args.method)
        elif args.command == "notebook":
            from .notebook import render

            print("wrote", render(args.name, params_path=args.params, root=args.root, task=args.task,
                                  method=args.method))
        else:  # a stage by name
            import importlib

            stage = importlib.import_module(f".stages.{args.command}", __package__)
            extra = [check_method(args.method)] if args.command == "search" else []
            stage.run(load_params(args.params), args.task, *extra, root=args.root)

    return guarded(call)


if __name__ == "__main__":
    sys.exit(main())
