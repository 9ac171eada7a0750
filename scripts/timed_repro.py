"""Run `dvc repro` and record how long it took, per stage: reports/run-time.json.

`make repro` runs this. The record names the profile, the commit (and whether the tree was dirty), the
machine's cores, the wall time and each stage that ran with its seconds (from its "Running stage" line to
the next one). The summary stage runs inside the timed run and reads the previous record, so after a run
that ran at least one stage this script writes the new record and re-renders the summary alone
(`dvc repro --force --single-item summary`) so the README states it; that last, short render is not in the
record. A run that ran no stage (everything up to date) keeps the previous record.

Interrupted runs: the record is rewritten after every finished stage with ``"complete": false``; the next
run of the same profile resumes it when no pipeline source changed since the record's commit (the
provenance's SOURCE_PATHS: `git diff` between that commit and HEAD is empty there, so DVC keeps the finished
stages and the run cache the finished runs); it adds its own stages and wall time, so the record of a
resumed run covers all its parts (``"parts"``: how many invocations it took; ``"commits"``: the commits
they ran at, which differ only outside the pipeline's sources).

    python scripts/timed_repro.py            # = dvc repro, timed
    python scripts/timed_repro.py -- -s probe@sentiment   # extra arguments go to dvc repro
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from embedtune.reports import SOURCE_PATHS

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "reports" / "run-time.json"
STAGE_LINE = re.compile(r"Running stage '([^']+)'")


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def _profile() -> str:
    return str(yaml.safe_load((ROOT / "params.yaml").read_text()).get("profile", "unknown"))


def timed_run(command: list[str], on_stage_done: Callable[[list[dict[str, object]], float], None] | None = None,
              *, cwd: Path = ROOT, env: dict[str, str] | None = None, prefix: str = ""
              ) -> tuple[int, list[dict[str, object]], float, float]:
    """Run `command` in `cwd`, echo its output (each line after `prefix`, which tells apart runs that share a
    terminal), and time every stage it announces. Returns (exit code, stages, started, finished) with times as
    Unix seconds; `on_stage_done(stages, started)` sees each finished stage."""
    started = time.time()
    stages: list[dict[str, object]] = []
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()
        match = STAGE_LINE.search(line)
        if match:
            now = time.time()
            if stages:
                stages[-1]["seconds"] = round(now - float(stages[-1]["started"]), 1)
                if on_stage_done is not None:
                    on_stage_done(stages, started)
            stages.append({"stage": match.group(1), "started": now})
    code = proc.wait()
    finished = time.time()
    if stages:
        stages[-1]["seconds"] = round(finished - float(stages[-1]["started"]), 1)
    return code, stages, started, finished


def _utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def record(stages: list[dict[str, object]], started: float, finished: float, *,
           resumed: dict[str, object] | None = None, complete: bool = True,
           commit: str | None = None) -> dict[str, object]:
    """The record of this invocation, added to `resumed` (an unfinished record of the same run) if given.
    `commit`: the HEAD this invocation started at (a commit made while it runs does not rename it);
    None reads HEAD now."""
    own = [{"stage": s["stage"], "seconds": s["seconds"]} for s in stages if "seconds" in s]
    earlier = resumed or {}
    commit = commit or _git("rev-parse", "--short", "HEAD")
    return {"profile": _profile(), "commit": commit,
            "dirty": bool(_git("status", "--porcelain", "--", *SOURCE_PATHS)),  # the same paths as the provenance
            "cores": os.cpu_count(), "machine": platform.machine(),
            "started": earlier.get("started", _utc(started)), "finished": _utc(finished),
            "wall_seconds": round(float(earlier.get("wall_seconds", 0.0)) + finished - started, 1),
            "parts": int(earlier.get("parts", 0)) + 1, "complete": complete,
            "commits": _commits(earlier, commit),
            "stages": [*earlier.get("stages", []), *own]}


def _commits(earlier: dict[str, object], head: str) -> list[str]:
    """The commits of all parts, this one (`head`) last; an old record without the list names its own."""
    before = earlier.get("commits") or ([earlier["commit"]] if earlier.get("commit") else [])
    return [*before, head] if not before or before[-1] != head else list(before)


def same_pipeline(commit: str) -> bool:
    """True when no pipeline source (SOURCE_PATHS) differs between `commit` and HEAD."""
    if not commit:
        return False
    done = subprocess.run(["git", "diff", "--quiet", commit, "HEAD", "--", *SOURCE_PATHS], cwd=ROOT)
    return done.returncode == 0  # 0: same sources (HEAD itself included); 1: differs; 128: unknown commit


def unfinished(path: Path = RECORD) -> dict[str, object] | None:
    """The record of an interrupted run of this profile whose pipeline sources are unchanged since its
    commit, which this invocation resumes."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    same = data.get("profile") == _profile() and same_pipeline(str(data.get("commit", "")))
    return data if same and data.get("complete") is False else None


def write_record(data: dict[str, object], path: Path = RECORD) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(json.dumps(data, indent=2) + "\n")
    staged.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dvc_args", nargs="*", help="extra arguments for dvc repro (after --)")
    args = parser.parse_args(argv)
    resumed = unfinished()
    head = _git("rev-parse", "--short", "HEAD")  # the commit this part runs, read before it starts

    def checkpoint(stages: list[dict[str, object]], started: float) -> None:
        write_record(record(stages, started, time.time(), resumed=resumed, complete=False, commit=head))

    code, stages, started, finished = timed_run(["dvc", "repro", *args.dvc_args], on_stage_done=checkpoint)
    if code != 0:
        print(f"dvc repro failed (exit {code}); {RECORD.relative_to(ROOT)} holds the finished stages as an "
              "unfinished record, which the next run resumes", file=sys.stderr)
        return code
    if not stages:
        print(f"no stage ran; {RECORD.relative_to(ROOT)} keeps the previous record")
        return 0
    data = record(stages, started, finished, resumed=resumed, commit=head)
    write_record(data)
    print(f"wrote {RECORD.relative_to(ROOT)}: {data['wall_seconds'] / 60:.1f} min, {len(stages)} stages")
    return subprocess.run(["dvc", "repro", "--force", "--single-item", "summary"], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
