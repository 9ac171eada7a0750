"""`make smoke`: the real pipeline (`dvc repro`) on the smoke profile, in a scratch copy of the tracked files
(``.scratch/smoke/``), so nothing of the committed run changes. Prints where the reports are."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from embedtune import scratch


def main() -> int:
    work = scratch.REPO / ".scratch" / "smoke"
    scratch.copy_tracked(work)
    params = work / "params.yaml"
    data_root = os.environ.get("EMBEDTUNE_DATA_ROOT", str((scratch.REPO / "../shared/data").resolve()))
    lines = params.read_text().replace("profile: cpu", "profile: smoke", 1).splitlines()
    params.write_text("\n".join(f"data_root: {data_root}" if line.startswith("data_root:") else line
                                for line in lines) + "\n")
    done = scratch.repro(work, capture=False)
    if done.returncode == 0:
        print(f"smoke run done: {Path(work, 'reports', 'index.html')}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
