"""`make smoke`: the real pipeline (`dvc repro`) on the smoke profile, in a scratch copy of the tracked files
(``.scratch/smoke/``), so nothing of the committed run changes. Prints where the reports are."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    work = REPO / ".scratch" / "smoke"
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True).stdout
    names = [n for n in tracked.decode().split("\0") if n and not n.startswith(("results/", "metrics/", "reports/"))]
    names = [n for n in names if n != "dvc.lock" and (REPO / n).is_file()]  # the committed run's lock belongs to the cpu profile
    for name in names:
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    params = work / "params.yaml"
    text = params.read_text()
    data_root = os.environ.get("EMBEDTUNE_DATA_ROOT", str((REPO / "../shared/data").resolve()))
    text = text.replace("profile: cpu", "profile: smoke", 1)
    text = "\n".join(f"data_root: {data_root}" if line.startswith("data_root:") else line for line in text.splitlines())
    params.write_text(text + "\n")
    env = {**os.environ, "PYTHONPATH": str(work / "src")}
    dvc = str(Path(sys.executable).parent / "dvc")
    if not (work / ".dvc" / "tmp").parent.is_dir() or not (work / ".dvc").is_dir():
        subprocess.run([dvc, "init", "--no-scm", "-f"], cwd=work, check=True, env=env)
    (work / ".dvc" / "config").write_text("[core]\n    no_scm = true\n    autostage = false\n    analytics = false\n")
    done = subprocess.run([dvc, "repro"], cwd=work, env=env)
    if done.returncode == 0:
        print(f"smoke run done: {work / 'reports' / 'index.html'}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
