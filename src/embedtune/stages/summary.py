"""Stage `summary`: the across-task answer — environment record, key figure, index page and the README's two
generated blocks. Notebook 04 calls `run` and shows what it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import reports
from ..bundle import environment_versions, load_run_time, task_bundle
from ..findings import MARK_BEGIN, MARK_END, readme_block
from ..headline import answer_figure
from ..io import write_json
from ..params import Params
from ..paths import TaskPaths
from ..registry import TUNED_METHODS
from ..store import iter_records, store_bytes, store_summary
from ..tables import answer_table

# the packaged backbones (backbones.py) by the names their model cards give them
PACKAGED_NAMES = {"pkg:all-minilm-l6-v2": "all-MiniLM-L6-v2", "pkg:efficientnet-lite0": "ImageNet EfficientNet-Lite0"}


def backbone_label(name: str) -> str:
    """A backbone as a page names it: a packaged one by its model's name, a hub id as is, a local folder by its
    last part (no path of this machine on a page)."""
    return PACKAGED_NAMES.get(name, Path(name).name if Path(name).is_absolute() else name)


def backbones_text(params: Params, tasks: list[str]) -> str:
    """Each backbone once with the tasks it serves: "all-MiniLM-L6-v2 (sentiment, legal), ..."."""
    served: dict[str, list[str]] = {}
    for task in tasks:
        served.setdefault(backbone_label(params.backbone_for(task)), []).append(task)
    return ", ".join(f"{name} ({', '.join(ts)})" for name, ts in served.items())


def hardware_text(records: list[dict[str, Any]], *, reported: int) -> str:
    """What trained the stored runs, from their records: device and precision, most runs first, then how many
    of the stored runs the pages report (`reported`: the tuned result rows; the rest are learning-rate search
    runs whose rate was not kept). The pages' seconds were measured there, not on the machine that renders."""
    kinds: dict[str, int] = {}
    for r in records:
        ran = r.get("ran", {})
        kind = f"{ran.get('device', 'unknown device')}, {ran.get('precision', 'unknown precision')}"
        kinds[kind] = kinds.get(kind, 0) + 1
    if not kinds:
        return "no stored run"
    where = "; ".join(f"{k} ({n} runs)" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    return f"{where}: {reported} tuned runs reported, {len(records) - reported} more from learning-rate searches"


ANSWER_FIGURE = Path("reports") / "figures" / "summary-answer.png"


def _run_time(root: Path) -> dict[str, Any] | None:
    """The last timed repro plus what the run store holds: the compute behind the pages, over every sitting."""
    run_time = load_run_time(root)
    if run_time is None:
        return None
    return {**run_time, "store": {**store_summary(r for _, r in iter_records(root)), "bytes": store_bytes(root)}}


def run(params: Params, *, root: Path = Path("."), readme: Path | None = None) -> dict[str, Any]:
    """Write ``reports/environment.json``, ``reports/figures/summary-learning-curves.png``,
    ``reports/index.html`` and the generated blocks of `readme` (default ``<root>/README.md``; a project without
    one gets a README holding just those blocks).
    Tasks whose compare stage has not run are left out. Returns the per-task bundles for the notebook."""
    per_task = {t: task_bundle(root, t) for t in params.tasks
                if (TaskPaths(root, t).results / "decision.csv").is_file()}
    if not per_task:
        raise FileNotFoundError("no task has compare results yet; run the compare stage first: dvc repro compare")
    write_json(root / "reports" / "environment.json", environment_versions())  # versions behind results/
    headlines = {t: b["headline"] for t, b in per_task.items()}
    figure = reports.summary_figure(headlines, root)
    answer = reports.save_figure(answer_figure(per_task), root / ANSWER_FIGURE)
    run_time = _run_time(root)
    info = {**reports.provenance(params.profile), "backbones": backbones_text(params, list(per_task)),
            "hardware": hardware_text([r for _, r in iter_records(root)], reported=sum(
                int(b["results"]["method"].astype(str).isin(TUNED_METHODS).sum()) for b in per_task.values()))}
    reports.index_html(reports_dir=root / "reports", per_task=per_task, info=info, tasks=list(params.tasks))
    readme = root / "README.md" if readme is None else readme
    if not readme.is_file():  # a new project: the stage's declared output starts as the two generated blocks
        from ..io import write_text

        write_text(readme, f"# Results\n\n{reports.README_BEGIN}\n{reports.README_END}\n\n{MARK_BEGIN}\n{MARK_END}\n")
    if readme.is_file():
        reports.update_readme(readme, readme_block(per_task, run_time=run_time), begin=MARK_BEGIN, end=MARK_END)
        reports.update_readme(readme, reports.readme_section(headlines=headlines, info=info,
                                                             key_figure="reports/figures/summary-learning-curves.png",
                                                             answer=answer_table(per_task),
                                                             answer_figure=ANSWER_FIGURE.as_posix()))
    return {"per_task": per_task, "figure": figure, "answer_figure": answer, "run_time": run_time}


def view(params: Params, *, root: Path = Path(".")) -> dict[str, Any]:
    """What `run` returns, read from the committed files (the notebook's read mode): writes nothing (no
    environment record, index page or README block); a missing file stops with the stage that writes it."""
    per_task = {t: task_bundle(root, t) for t in params.tasks
                if (TaskPaths(root, t).results / "decision.csv").is_file()}
    if not per_task:
        raise FileNotFoundError("no task has compare results yet; run the compare stage first: dvc repro compare")
    figure, answer = root / "reports" / "figures" / "summary-learning-curves.png", root / ANSWER_FIGURE
    for path in (figure, answer):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; the summary stage writes it: dvc repro summary")
    return {"per_task": per_task, "figure": figure, "answer_figure": answer, "run_time": _run_time(root)}
