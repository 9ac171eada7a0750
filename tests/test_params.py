"""params.yaml validation: unknown keys, wrong types and bad names stop with a message naming them."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from embedtune.params import ParamsError, check_method, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_validate_for_every_profile() -> None:
    for profile in ("smoke", "cpu", "gpu"):
        params = parse_params(copy.deepcopy(RAW), profile=profile)
        assert params.profile == profile
        assert set(params.tasks) == {"sentiment", "medical", "legal"}
    assert parse_params(copy.deepcopy(RAW)).profile == RAW["profile"]


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda r: r["profiles"]["cpu"]["probe"].update(c_gird=[1.0]), r"profiles\.cpu\.probe: unknown key\(s\) \['c_gird'\]; allowed keys: \['c_grid', 'grid_extensions', 'max_iter'\]"),
    (lambda r: r["profiles"]["cpu"]["finetune"].update(max_epochs="three"), r"profiles\.cpu\.finetune\.max_epochs: bad value 'three'; expected an integer"),
    (lambda r: r["profiles"]["cpu"]["finetune"].update(methods=["full", "prompt"]), r"methods\[1\]: bad value 'prompt'; allowed values: \['full', 'lp_ft', 'lora', 'partial'\]"),
    (lambda r: r["tasks"]["medical"].update(main_metric="f2"), r"tasks\.medical\.main_metric: bad value 'f2'; allowed values"),
    (lambda r: r["tasks"]["legal"].update(source="web"), r"tasks\.legal\.source: bad value 'web'"),
    (lambda r: r.update(profile="tpu"), r"profile: bad value 'tpu'; allowed values: \['cpu', 'gpu', 'smoke'\]"),
    (lambda r: r.update(extra=1), r"unknown top-level key\(s\) \['extra'\]"),
    (lambda r: r["profiles"]["cpu"]["budgets"].update(sizes=[1]), r"budgets must be >= 2"),
    (lambda r: r["profiles"]["cpu"]["embed"].update(pooling="max"), r"pooling: bad value 'max'; allowed values: \['mean', 'cls'\]"),
])
def test_bad_params_name_the_key_and_the_allowed_values(mutate, expected) -> None:
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(ParamsError, match=expected):
        parse_params(raw)


def test_unknown_task_and_method_are_refused_with_the_allowed_names() -> None:
    params = parse_params(copy.deepcopy(RAW))
    with pytest.raises(ParamsError, match=r"unknown task 'finance'; allowed: \['legal', 'medical', 'sentiment'\]"):
        params.task("finance")
    with pytest.raises(ParamsError, match=r"method: bad value 'adapter'"):
        check_method("adapter")


def test_no_environment_variable_changes_the_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The profile and data root come from the file DVC tracks, so DVC re-runs a stage when they change."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(RAW))
    monkeypatch.setenv("EMBEDTUNE_DATA_ROOT", str(tmp_path / "mirror"))
    monkeypatch.setenv("EMBEDTUNE_PROFILE", "gpu")
    params = load_params(path)
    assert params.data_root == (tmp_path / RAW["data_root"]).resolve()
    assert params.profile == RAW.get("profile", "cpu")


def test_missing_params_file_says_where_to_run(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found; run from the repository root"):
        load_params(tmp_path / "nope.yaml")


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_environment_yml_names_the_same_dependencies_as_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"])
    for extra in ("notebooks", "pipeline", "dev"):
        declared |= _names(project["optional-dependencies"][extra])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = _names([p for p in pip_section if not p.startswith("-")])
    assert listed == declared
    assert "python=3.11" in env["dependencies"]


def test_dropping_a_task_needs_no_edit_to_another_profile(tmp_path) -> None:
    """Issue 29: removing `legal` from `tasks` once failed on the gpu profile's task_backbones.legal."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tasks"].pop("legal")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert "legal" not in load_params(path).tasks  # cpu active: the gpu profile's legal backbone is not checked
    raw["profile"] = "gpu"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ParamsError, match="task_backbones: unknown task 'legal'"):
        load_params(path)
