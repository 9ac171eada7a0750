"""The environment lock: drift is reported with the package, both versions and the fix."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _check_env():
    spec = importlib.util.spec_from_file_location("check_env", REPO / "scripts" / "check_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_drift_names_the_package_and_both_versions(tmp_path: Path, capsys) -> None:
    check = _check_env()
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\nNumPy==0.0.1\nnot-a-real-package-xyz==1.0\n")
    assert check.main(lock) == 1
    err = capsys.readouterr().err
    assert "numpy: pinned 0.0.1, installed" in err and "not-a-real-package-xyz: pinned 1.0, not installed" in err
    assert "make install" in err


def test_repository_lock_pins_the_packages_the_results_name() -> None:
    check = _check_env()
    pins = check.read_lock(REPO / "requirements.lock")
    for name in ("torch", "transformers", "scikit-learn", "peft", "accelerate", "dvc", "papermill"):
        assert name in pins, name
