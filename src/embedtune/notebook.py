"""Render a stage's notebook: papermill executes ``notebooks/<name>.ipynb`` with the stage's parameters, then
nbconvert writes the reader's HTML (no code cells) under ``reports/``.

    python -m embedtune.notebook 01-linear-probe --task sentiment
    python -m embedtune.notebook 02-finetune --task legal --method lora
    python -m embedtune.notebook 04-summary

Each notebook's first code cell validates its parameters (`load`) and calls its stage's ``run``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .params import PROFILES, Params, ParamsError, check_method, load_params

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # terminal colours in IPython tracebacks
NOTEBOOKS = {"01-linear-probe": "task", "02-finetune": "task+method", "03-compare": "task", "04-summary": "all"}


def load(*, params_path: str, profile: str, task: str | None = None, method: str | None = None,
         root: str = ".") -> tuple[Params, Path]:
    """Validate papermill parameters (types and names) and load params.yaml for `profile`."""
    for name, value in (("params_path", params_path), ("profile", profile), ("root", root)):
        if not isinstance(value, str):
            raise ParamsError(f"notebook parameter {name}: bad value {value!r} ({type(value).__name__}); "
                              "expected a string")
    if profile not in PROFILES:
        raise ParamsError(f"notebook parameter profile: bad value {profile!r}; allowed values: {list(PROFILES)}")
    params = load_params(params_path, profile=profile)
    if task is not None:
        if not isinstance(task, str):
            raise ParamsError(f"notebook parameter task: bad value {task!r}; expected a task name string")
        params.task(task)
    if method is not None:
        check_method(method)
    _page_tables()
    return params, Path(root)


def _page_tables() -> None:
    """In a kernel, a table shows as a page table: no 0…N index column, headers in words (`tables.header_text`),
    a dash for a missing cell. Outside a kernel nothing changes."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    import pandas as pd

    def page_table(frame: pd.DataFrame) -> str:
        from .tables import header_text

        shown = frame.rename(columns=header_text)
        return shown.to_html(index=False, na_rep="—", escape=True, border=0, classes="dataframe")

    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, page_table)


class Figure:
    """A PNG shown with its alt text: inline in JupyterLab, and in the rendered page as an ``<img>`` whose
    ``alt`` says what the figure shows (nbconvert's own image output has none)."""

    def __init__(self, path: str | Path, alt: str) -> None:
        self.path, self.alt = Path(path), alt

    def _repr_html_(self) -> str:
        import base64
        import html

        data = base64.b64encode(self.path.read_bytes()).decode("ascii")
        return (f'<figure style="margin:0.6em 0"><img src="data:image/png;base64,{data}" '
                f'alt="{html.escape(self.alt)}" style="max-width:100%;height:auto">'
                f'<figcaption style="font-size:0.85em">{html.escape(self.alt)}</figcaption></figure>')


def figure(path: str | Path, kind: str, *, subject: str = "", metric: str = "main metric") -> Figure:
    """The figure at `path` with the alt text and caption of its `kind` (`reports.figure_alt`)."""
    from .reports import figure_alt

    return Figure(path, figure_alt(kind, subject=subject, metric=metric))


def html_page(executed: Path) -> str:
    """The executed notebook as HTML without code (nbconvert's ``--no-input``), in this process: a
    subprocess per page cost ~2 s of interpreter start and imports."""
    import nbconvert
    import nbformat

    exporter = nbconvert.HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    return body


def render(name: str, *, params_path: Path, root: Path, task: str | None = None, method: str | None = None,
           profile: str | None = None, kernel: str = "python3") -> Path:
    """Execute notebooks/<name>.ipynb with papermill and render it to HTML under reports/.

    Outputs: reports/<task>/<name>[-<method>].html (or reports/summary.html); the executed .ipynb sits
    beside it. Both are written to a temporary file first and renamed, so a failed run leaves neither; it
    leaves ``<page>.failed.ipynb`` (ignored by git) and raises an error naming the cell, its first lines and
    the traceback."""
    import papermill

    if name not in NOTEBOOKS:
        raise ParamsError(f"notebook {name!r} unknown; known notebooks: {sorted(NOTEBOOKS)}")
    params = load_params(params_path, profile=profile)
    # paths relative to `root` (papermill's working directory): no machine's absolute path enters a report
    # write=True: the stage computes and writes its outputs (a notebook opened by hand defaults to read mode)
    parameters = {"params_path": os.path.relpath(params_path.resolve(), root.resolve()), "profile": params.profile,
                  "root": ".", "write": True}
    if task is not None:
        params.task(task)
        parameters["task"] = task
    if method is not None:
        parameters["method"] = check_method(method)
    suffix = f"-{method}" if method else ""
    out_base = root / "reports" / "summary" if name == "04-summary" else root / "reports" / str(task) / f"{name}{suffix}"
    out_base.parent.mkdir(parents=True, exist_ok=True)
    source = Path(__file__).resolve().parents[2] / "notebooks" / f"{name}.ipynb"
    # tqdm.auto (imported by libraries in the kernel) warns that ipywidgets is missing, quoting the path of
    # its own file: keep that warning, and the machine's path in it, out of the rendered report
    kernel_warnings = "ignore:IProgress not found"
    current = os.environ.get("PYTHONWARNINGS")
    if kernel_warnings not in (current or ""):
        os.environ["PYTHONWARNINGS"] = f"{current},{kernel_warnings}" if current else kernel_warnings
    # progress bars (ours, transformers' weight loading) go to the kernel's stderr, which the page would show
    # as a wall of "epoch 0: 0%|" lines: the reader gets the tables instead
    os.environ["TQDM_DISABLE"] = "1"
    with tempfile.TemporaryDirectory(prefix="embedtune-nb-") as tmp:  # scratch outside reports/
        executed = Path(tmp) / f"{out_base.name}.ipynb"
        failed = out_base.with_suffix(".failed.ipynb")
        try:
            papermill.execute_notebook(str(source), str(executed), parameters=parameters, kernel_name=kernel,
                                       cwd=str(root.resolve()), progress_bar=False)
        except papermill.PapermillExecutionError as exc:
            if executed.is_file():  # papermill saved the notebook up to the failing cell, outputs included
                shutil.copyfile(executed, failed)
            out_base.with_suffix(".ipynb").unlink(missing_ok=True)  # the previous run's, no longer its page's
            raise RuntimeError(failure_message(name, exc, failed if failed.is_file() else None)) from None
        failed.unlink(missing_ok=True)
        produced_html = executed.with_suffix(".html")
        produced_html.write_text(page_chrome(html_page(executed), task=task, method=method,
                                             index_href="index.html" if name == "04-summary" else "../index.html"),
                                 encoding="utf-8")
        for produced, final in ((produced_html, out_base.with_suffix(".html")),
                                (executed, out_base.with_suffix(".ipynb"))):
            staged = final.with_name(f".{final.name}.tmp")
            shutil.copyfile(produced, staged)
            os.replace(staged, final)
    return out_base.with_suffix(".html")


H1 = re.compile(r"(<h1[^>]*>)(.*?)(<a class=\"anchor-link\"|</h1>)", re.S)


def page_chrome(page: str, *, task: str | None, method: str | None, index_href: str) -> str:
    """What makes a rendered notebook a page of this site: a title and first heading naming its task and
    method (twelve fine-tuning pages would otherwise share one), and a link back to the index."""
    import html as html_lib

    match = H1.search(page)
    heading = re.sub(r"<[^>]+>", "", match.group(2)).strip() if match else "Embed or Tune"
    subject = " · ".join(x for x in (task, method) if x)
    title = f"{subject}: {heading}" if subject else heading
    if match and subject:  # before the title changes: the match's offsets are into the page as it came
        page = page[:match.start(2)] + f"{html_lib.escape(subject)}: " + page[match.start(2):]
    page = re.sub(r"<title>.*?</title>", f"<title>{html_lib.escape(title)} — Embed or Tune</title>", page, count=1,
                  flags=re.S)
    back = (f"<p class='back-to-index'><a href='{index_href}'>← Embed or Tune: all results</a></p>")
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + back, page, count=1)


def failure_message(name: str, exc: Any, kept: Path | None, *, source_lines: int = 4) -> str:
    """What failed, where, and what to open: the cell (index as papermill counts it, and its first lines),
    the error and its traceback without terminal colours, and the executed notebook kept for inspection."""
    source = str(getattr(exc, "source", "") or "").splitlines()
    shown = "\n".join(f"    {line}" for line in source[:source_lines]) + ("\n    ..." if len(source) > source_lines else "")
    trace = ANSI.sub("", "\n".join(getattr(exc, "traceback", []) or []))
    where = f"cell {getattr(exc, 'cell_index', '?')} (execution count {getattr(exc, 'exec_count', '?')})"
    keep = f"\nthe executed notebook is kept at {kept}" if kept else ""
    return (f"notebook {name} failed in {where}: {getattr(exc, 'ename', '')}: {getattr(exc, 'evalue', '')}\n"
            f"  the cell begins:\n{shown}\n  traceback:\n{trace}{keep}")


def main(argv: list[str] | None = None) -> int:
    from .entry import guarded

    parser = argparse.ArgumentParser(prog="python -m embedtune.notebook", description=__doc__.splitlines()[0])
    parser.add_argument("name", help=f"one of {sorted(NOTEBOOKS)}")
    parser.add_argument("--task")
    parser.add_argument("--method")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    return guarded(lambda: print("wrote", render(args.name, params_path=args.params, root=args.root,
                                                 task=args.task, method=args.method)))


if __name__ == "__main__":
    sys.exit(main())
