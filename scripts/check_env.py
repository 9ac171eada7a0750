"""Fail with a clear message when installed package versions drift from requirements.lock (run by `make test`)."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def read_lock(path: Path) -> dict[str, str]:
    """Package name (normalised) → pinned version, from ``name==version`` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalise(name)] = version.strip()
    return pins


def normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def drift(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per package whose installed version differs from its pin (or that is missing)."""
    problems = []
    for name, version in sorted(pins.items()):
        have = installed.get(name)
        if have is None:
            problems.append(f"{name}: pinned {version}, not installed")
        elif have != version:
            problems.append(f"{name}: pinned {version}, installed {have}")
    return problems


def installed_versions() -> dict[str, str]:
    return {normalise(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def main(lock: Path = REPO / "requirements.lock") -> int:
    if not lock.is_file():
        print(f"error: {lock} not found; generate it with `make lock`", file=sys.stderr)
        return 1
    problems = drift(read_lock(lock), installed_versions())
    if problems:
        print("error: the installed packages drift from requirements.lock (the versions the committed results "
              "were produced with):\n  " + "\n  ".join(problems) +
              "\nFix: `make install` reinstalls the locked versions; after a deliberate upgrade, `make lock` "
              "rewrites the lock (and the results should be re-run with it).", file=sys.stderr)
        return 1
    print(f"environment matches requirements.lock ({len(read_lock(lock))} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
