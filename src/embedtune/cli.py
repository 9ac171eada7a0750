"""Command line used by dvc.yaml and the Makefile: ``python -m embedtune.cli <command> ...``.

Every command exits non-zero with one clear message (no traceback) on bad input, and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .params import PROFILES, ParamsError, check_method, load_params

NOTEBOOKS = {"01-linear-probe": "task", "02-finetune": "task+method", "03-compare": "task", "04-summary": "all"}


def run_notebook(name: str, *, params_path: Path, root: Path, task: str | None = None, method: str | None = None,
                 profile: str | None = None, kernel: str = "python3") -> Path:
    """Execute notebooks/<name>.ipynb with papermill and render it to HTML under reports/.

    Outputs: reports/<task>/<name>[-<method>].html (or reports/summary.html); the executed .ipynb sits
    beside it. Both are written to a temporary file first and renamed, so a failed run leaves neither.
    """
    import papermill

    params = load_params(params_path, profile=profile)
    # paths relative to `root` (papermill's working directory): no machine's absolute path enters a report
    parameters = {"params_path": os.path.relpath(params_path.resolve(), root.resolve()), "profile": params.profile,
                  "root": "."}
    if task is not None:
        params.task(task)
        parameters["task"] = task
    if method is not None:
        parameters["method"] = check_method(method)
    if name == "04-summary":
        out_base = root / "reports" / "summary"
    else:
        suffix = f"-{method}" if method else ""
        out_base = root / "reports" / str(task) / f"{name}{suffix}"
    out_base.parent.mkdir(parents=True, exist_ok=True)
    source = Path(__file__).resolve().parents[2] / "notebooks" / f"{name}.ipynb"
    if not source.is_file():
        raise ParamsError(f"notebook {source} not found; known notebooks: {sorted(NOTEBOOKS)}")
    # tqdm.auto (imported by libraries in the kernel) warns that ipywidgets is missing, quoting the path of
    # its own file: keep that warning, and the machine's path in it, out of the rendered report
    kernel_warnings = "ignore:IProgress not found"
    current = os.environ.get("PYTHONWARNINGS")
    if kernel_warnings not in (current or ""):
        os.environ["PYTHONWARNINGS"] = f"{current},{kernel_warnings}" if current else kernel_warnings
    # papermill's scratch folder lives outside reports/ (a killed run leaves nothing there)
    with tempfile.TemporaryDirectory(prefix="embedtune-nb-") as tmp:
        executed = Path(tmp) / f"{out_base.name}.ipynb"
        papermill.execute_notebook(str(source), str(executed), parameters=parameters, kernel_name=kernel,
                                   cwd=str(root.resolve()), progress_bar=False)
        # readers get the outputs; the notebook (linked from the page) stays the source of the code
        subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--no-input", "--log-level", "WARN",
                        str(executed)], check=True)
        for produced, final in ((executed.with_suffix(".html"), out_base.with_suffix(".html")),
                                (executed, out_base.with_suffix(".ipynb"))):
            staged = final.with_name(f".{final.name}.tmp")
            shutil.copyfile(produced, staged)
            os.replace(staged, final)
    return out_base.with_suffix(".html")


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


def build_index(params_path: Path, root: Path, *, readme: Path | None) -> None:
    """reports/index.html and the README results section, from the compare stage's files."""
    import pandas as pd

    from . import reports
    from .findings import task_bundle
    from .io import read_json

    params = load_params(params_path)
    per_task = {}
    for t in params.tasks:
        headline = root / "metrics" / t / "headline.json"
        if (root / "results" / t / "comparisons.csv").is_file():
            per_task[t] = task_bundle(root, t)
        elif headline.is_file():  # compare has not run for this task: its headline only
            per_task[t] = {"headline": read_json(headline), "guide": pd.DataFrame(), "comparisons": pd.DataFrame()}
    info = reports.provenance(params.profile)
    reports.index_html(reports_dir=root / "reports", per_task=per_task, info=info)
    if readme is not None:
        figure = "reports/figures/summary-learning-curves.png"
        section = reports.readme_section(headlines={t: b["headline"] for t, b in per_task.items()}, info=info,
                                         key_figure=figure if (root / figure).is_file() else None)
        reports.update_readme(readme, section)


def run_pipeline(params_path: Path, root: Path, *, profile: str | None) -> None:
    """prepare → embed → 01 → 02 (each method) → 03 per task, then 04 and the index, into `root`."""
    from .stages import embed_stage, prepare_stage, shift_stage
    from .tuning import search_stage

    params = load_params(params_path, profile=profile)
    for task in params.tasks:
        prepare_stage(params, task, root=root)
        shift_stage(params, task, root=root)
        embed_stage(params, task, root=root)
        run_notebook("01-linear-probe", params_path=params_path, root=root, task=task, profile=params.profile)
        for method in params.scale.finetune.methods:
            search_stage(params, task, method, root=root)
            run_notebook("02-finetune", params_path=params_path, root=root, task=task, method=method,
                         profile=params.profile)
        run_notebook("03-compare", params_path=params_path, root=root, task=task, profile=params.profile)
    run_notebook("04-summary", params_path=params_path, root=root, profile=params.profile)
    build_index(params_path, root, readme=None)
    print(f"wrote {root / 'reports' / 'index.html'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embedtune", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--root", type=Path, default=Path("."), help="where data/, results/, reports/ go")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="canonical splits, data card, budget subsets")
    p.add_argument("--task", required=True)
    p = sub.add_parser("embed", help="embedding cache")
    p.add_argument("--task", required=True)
    p = sub.add_parser("shift", help="shift test sets of a task (never used for selection)")
    p.add_argument("--task", required=True)
    p = sub.add_parser("search", help="learning-rate search of a tuned method at the pilot budget")
    p.add_argument("--task", required=True)
    p.add_argument("--method", required=True)
    p = sub.add_parser("finetune", help="one tuned method's runs without the notebook (its LR search first when "
                                        "missing); the way to scale out: `accelerate launch ... -m embedtune.cli "
                                        "finetune`, then `dvc repro` renders the stage from the run cache")
    p.add_argument("--task", required=True)
    p.add_argument("--method", required=True)
    p = sub.add_parser("notebook", help="run a notebook with papermill and render it to HTML")
    p.add_argument("name", choices=sorted(NOTEBOOKS))
    p.add_argument("--task")
    p.add_argument("--method")
    p = sub.add_parser("set-profile", help="set the active profile in params.yaml")
    p.add_argument("profile")
    p = sub.add_parser("index", help="reports/index.html and the README results section")
    p.add_argument("--readme", type=Path, default=None)
    sub.add_parser("validate", help="validate params.yaml and print the active profile")
    p = sub.add_parser("pipeline", help="every stage in order without DVC (e.g. `--root .scratch pipeline "
                                        "--profile smoke`); DVC is the main path")
    p.add_argument("--profile", choices=PROFILES, default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            from .stages import prepare_stage

            card = prepare_stage(load_params(args.params), args.task, root=args.root)
            print(f"{args.task}: counts {card['counts']}, duplicates removed {card['duplicates_removed']}")
        elif args.command == "embed":
            from .stages import embed_stage

            embed_stage(load_params(args.params), args.task, root=args.root)
        elif args.command == "shift":
            from .stages import shift_stage

            sets = shift_stage(load_params(args.params), args.task, root=args.root)
            print(f"{args.task}: {len(sets)} shift sets")
        elif args.command == "search":
            from .tuning import search_stage

            check_method(args.method)
            frame = search_stage(load_params(args.params), args.task, args.method, root=args.root)
            print(frame.to_string(index=False))
        elif args.command == "finetune":
            from .stages import TaskPaths
            from .tuning import finetune_stage, search_stage

            check_method(args.method)
            params = load_params(args.params)
            if not (TaskPaths(args.root, args.task).results / "hparams" / f"{args.method}.csv").is_file():
                search_stage(params, args.task, args.method, root=args.root)
                if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # rank 0 writes the pick; the others wait for it
                    from accelerate import PartialState

                    PartialState().wait_for_everyone()
            out = finetune_stage(params, args.task, args.method, root=args.root)
            print(out[args.method].to_string(index=False))
        elif args.command == "notebook":
            html = run_notebook(args.name, params_path=args.params, root=args.root, task=args.task,
                                method=args.method)
            print(f"wrote {html}")
        elif args.command == "set-profile":
            set_profile(args.params, args.profile)
        elif args.command == "index":
            build_index(args.params, args.root, readme=args.readme)
        elif args.command == "pipeline":
            run_pipeline(args.params, args.root, profile=args.profile)
        elif args.command == "validate":
            params = load_params(args.params)
            print(f"params OK; profile {params.profile}; tasks {sorted(params.tasks)}")
    except (ParamsError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # papermill wraps notebook errors; show the cause, not the traceback
        name = type(exc).__name__
        if name == "PapermillExecutionError":
            print(f"error: notebook failed: {getattr(exc, 'ename', '')}: {getattr(exc, 'evalue', exc)}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
