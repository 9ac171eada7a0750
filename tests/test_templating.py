"""Declaring a task in params.yaml is enough: dvc.yaml's stages iterate over the declared tasks and methods.

The first test adds a generated task to a copy of the repository's params.yaml and lists the stages DVC
resolves from the repository's dvc.yaml. The second (slow) runs a generated 50-class bring-your-own task
through every stage with tiny models and checks that every method returns one column per label and
scores above chance.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _stage_names(root: Path) -> set[str]:
    from dvc.repo import Repo

    Repo.init(str(root), no_scm=True)
    return {stage.name for stage in Repo(str(root)).index.stages}


def test_a_task_declared_in_params_gets_every_stage(tmp_path: Path) -> None:
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data_root"] = str(tmp_path)
    raw["tasks"]["provisions"] = {"source": "table", "path": "provisions.csv", "main_metric": "macro_f1"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    names = _stage_names(tmp_path)
    expected = {f"{stage}@provisions" for stage in ("prepare", "shift", "embed", "probe", "compare")}
    expected |= {f"{stage}@provisions-{method}" for stage in ("search", "finetune") for method in raw["methods"]}
    assert expected <= names
    from dvc.repo import Repo

    summary = next(s for s in Repo(str(tmp_path)).index.stages if s.name == "summary")
    deps = {str(d.def_path) for d in summary.deps}
    assert {"results", "metrics"} <= deps  # the new task's files are inside these folders


def many_class_rows(n: int, *, n_classes: int, seed: int) -> pd.DataFrame:
    """Texts whose class is a pair of words from the tiny encoder's vocabulary (each said twice), so the
    tiny BERT and TF-IDF alike can tell the classes apart."""
    from itertools import combinations

    from .conftest import FILLER, WORDS_NEG, WORDS_POS

    pairs = list(combinations([*WORDS_POS, *WORDS_NEG, *FILLER[:3]], 2))[:n_classes]
    noise = FILLER[3:]  # never part of a class's pair
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    texts = [" ".join([pairs[label][0], *rng.choice(noise, 2), pairs[label][1], *rng.choice(noise, 2),
                       pairs[label][0], pairs[label][1]]) for label in labels]
    return pd.DataFrame({"text": texts, "label": [f"provision_{label:02d}" for label in labels]})


@pytest.mark.slow
def test_generated_many_class_task_runs_through_every_stage(project: dict[str, Any], tmp_path: Path) -> None:
    from .conftest import dvc_pipeline

    n_classes = 50
    rows = many_class_rows(1200, n_classes=n_classes, seed=0)
    rows.to_csv(project["data_root"] / "provisions.csv", index=False)
    raw = project["raw"]
    raw["tasks"] = {"provisions": {"source": "table", "path": "provisions.csv", "main_metric": "accuracy"}}
    smoke = raw["profiles"]["smoke"]
    smoke["budgets"] = {"sizes": [60, 200], "seeds": [0, 1]}  # 60 labels cannot hold all 50 classes twice
    smoke["data"] = {"max_train": None, "max_eval": None, "max_val": 100}
    smoke["finetune"].update({"max_epochs": 6, "min_steps": 30, "max_steps": 60, "evals_per_run": 2, "max_rounds": 3,
                              "search_budgets": [200]})
    # adapters on a random 32-wide encoder need a larger step than the fixture's grid to learn 50 classes
    smoke["finetune"]["lr_grid"]["lora"] = [1.0e-2, 3.0e-2]
    project["params_path"].write_text(yaml.safe_dump(raw, sort_keys=False))
    root = project["root"]
    done = dvc_pipeline(root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = root / "results" / "provisions"
    chance = 1 / n_classes
    for method in ("classic", "probe", *raw["methods"]):
        frame = pd.read_csv(results / f"{method}.csv")
        with np.load(results / "preds" / f"{method}.npz") as preds:
            keys = [k for k in preds.files if k.startswith("s")]
            assert keys and all(preds[k].shape[1] == n_classes for k in keys), method
        assert frame["accuracy"].max() > 3 * chance, (method, frame["accuracy"].tolist())


@pytest.mark.slow
def test_a_project_with_one_tuned_method_and_an_rgb_task_runs_every_stage(project: dict[str, Any]) -> None:
    """`methods: [lp_ft]` and a new RGB `.npz` task (28 px, 3 channels, 5 classes, channels first): dvc.yaml
    derives every per-method path from the list, so compare needs no other method; every stage runs, shift
    included, and every method is above chance."""
    from .conftest import dvc_pipeline
    from .test_stages import _rgb_images

    x, y = _rgb_images(400, layout="chw")
    np.savez(project["data_root"] / "colours.npz", images=x, labels=y)
    raw = project["raw"]
    raw["methods"] = ["lp_ft"]
    raw["tasks"] = {"colours": {"source": "npz", "path": "colours.npz", "main_metric": "accuracy"}}
    raw["profiles"]["smoke"]["finetune"]["search_budgets"] = [48]
    project["params_path"].write_text(yaml.safe_dump(raw, sort_keys=False))
    done = dvc_pipeline(project["root"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = project["root"] / "results" / "colours"
    comparisons = pd.read_csv(results / "comparisons.csv")
    assert set(comparisons[["method_a", "method_b"]].to_numpy().ravel()) == {"classic", "probe", "layer_probe", "lp_ft"}
    assert len(pd.read_csv(results / "decision.csv")) >= 1
    for method in ("classic", "probe", "layer_probe", "lp_ft"):
        frame = pd.read_csv(results / f"{method}.csv")
        assert frame.loc[frame["budget"] == 48, "accuracy"].mean() > 0.3, (method, frame["accuracy"].tolist())
    assert (project["root"] / "reports" / "index.html").is_file()
