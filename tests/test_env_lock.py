"""The environment lock: drift is reported with the package, both versions and the fix."""

from __future__ import annotations

from pathlib import Path

from .conftest import load_script

REPO = Path(__file__).resolve().parents[1]


def _check_env():
    return load_script("scripts/check_env.py")


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
