"""Where every stage reads and writes, per task: one place for the layout dvc.yaml declares.

``data/prepared/<task>/``, ``data/embeddings/<task>/``, ``data/shift/<task>/``, ``data/probe_heads/<task>/<method>.npz``
(DVC cache); ``results/<task>/``, ``metrics/<task>/``, ``reports/<task>/`` and ``reports/figures/`` (git);
``checkpoints/<task>/`` (the fine-tuning run cache, neither).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .io import read_json


@dataclass(frozen=True)
class TaskPaths:
    root: Path
    task: str

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared" / self.task

    @property
    def subsets(self) -> Path:
        return self.prepared / "subsets.json"

    @property
    def embeddings(self) -> Path:
        return self.root / "data" / "embeddings" / self.task

    @property
    def layer_features(self) -> Path:
        """Every block's pooled features of train / val / test (layers.py), beside the embeddings."""
        return self.embeddings / "layers.npz"

    @property
    def probe_heads(self) -> Path:
        """The raw-feature probe heads lp_ft starts from (`probe_input("lp_ft")`)."""
        return self.probe_input("lp_ft")

    def probe_input(self, method: str) -> Path:
        """What tuned `method` reads from the probe: lp_ft its raw-feature heads, every other an empty file
        (so only lp_ft's stages depend on a probe change)."""
        return self.root / "data" / "probe_heads" / self.task / f"{method}.npz"

    @property
    def shift(self) -> Path:
        return self.root / "data" / "shift" / self.task

    @property
    def results(self) -> Path:
        return self.root / "results" / self.task

    @property
    def metrics(self) -> Path:
        return self.root / "metrics" / self.task

    @property
    def reports(self) -> Path:
        return self.root / "reports" / self.task

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints" / self.task

    def preds(self, method: str) -> Path:
        return self.results / "preds" / f"{method}.npz"

    def hparams(self, method: str) -> Path:
        return self.results / "hparams" / f"{method}.csv"

    def figure(self, name: str) -> Path:
        return self.root / "reports" / "figures" / f"{self.task}-{name}.png"


def run_key(seed: int | str, budget: int | str) -> str:
    """The name of one (seed, budget) run in predictions, heads and the run cache."""
    return f"s{seed}_b{budget}"


def load_subsets(paths: TaskPaths) -> dict[str, Any]:
    """The budget subsets `prepare` wrote (sizes, seeds per size, row indices)."""
    if not paths.subsets.is_file():
        raise FileNotFoundError(f"{paths.subsets} not found; run the prepare stage first: dvc repro prepare")
    return read_json(paths.subsets)
