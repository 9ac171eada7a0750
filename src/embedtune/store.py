"""The run store: every finished tuned run (search and final) as one small committed record.

Layout: ``runs/<task>/<method>/<stage>/<seed>_<budget>_lr<lr>_<key12>.json`` beside a deflated ``.npz`` of
its predictions (test probabilities as float32, exactly what the stages score; each shift set's as float16,
for inspection). ``<stage>`` is ``search`` or ``final``: each DVC stage owns (and declares, ``persist``) its
own folder, and a lookup reads every folder of the method, so a final run equal to a search run is reused.

Protocol:
1. **Key.** `runs.run_identity`: what decides the numbers and a user controls (training config with the
   *requested* precision, data checksum, subset and selection rows, backbone weights hash, shift sets'
   content, training code digest; for lp_ft the probe's inputs, not its host-dependent head). The precision
   ``auto`` resolved to and the host are recorded in ``ran``, never keyed: a run made on one host is reused
   on any other.
2. **Write.** The ``.npz`` first, then the ``.json``, each atomically: a record exists iff its JSON does.
3. **Modes** (``EMBEDTUNE_STORE``): ``use`` (default: read, train what is missing, write), ``cold`` (never
   read: retrain every run and overwrite its record; ``make repro-cold``), ``require`` (read only: a run
   missing from the store is an error, so a re-render provably trains nothing).
4. ``checkpoints/`` keeps mid-run resume state only (round checkpoints), deleted when the run finishes.
5. **Size.** Every npz under ``runs/`` is deflated (lossless; about half the bytes of a tuned run's
   probabilities). `compact` deflates records written without it (the probe fits', written by
   `probe_fits`); arrays, JSON and keys do not change (`make runs-compact`; DVC then sees the probe stage's
   records change and replays it once, training nothing).
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import read_json, write_json, write_npz_compressed

MODES = ("use", "cold", "require")
STAGES = ("search", "final")


class MissingRunError(RuntimeError):
    """A run is absent from the store while ``EMBEDTUNE_STORE=require``."""


def store_mode() -> str:
    """The store mode from ``EMBEDTUNE_STORE`` (module docstring, step 3)."""
    mode = os.environ.get("EMBEDTUNE_STORE", "use") or "use"
    if mode not in MODES:
        raise ValueError(f"EMBEDTUNE_STORE: bad value {mode!r}; allowed values: {list(MODES)}")
    return mode


def record_name(*, seed: int, budget: int, lr: float, key: str) -> str:
    return f"s{seed}_b{budget}_lr{lr:.3g}_{key[:12]}"


@dataclass(frozen=True)
class RunStore:
    """The records of one task × method under ``<root>/runs/<task>/<method>/``."""

    root: Path
    task: str
    method: str

    @property
    def folder(self) -> Path:
        return self.root / "runs" / self.task / self.method

    def stage_folder(self, stage: str) -> Path:
        if stage not in STAGES:
            raise ValueError(f"run store stage: bad value {stage!r}; allowed values: {list(STAGES)}")
        return self.folder / stage

    def find(self, name: str, key: str) -> Path | None:
        """The record's JSON path in any stage folder whose stored key equals `key` (None when absent)."""
        for stage in STAGES:
            path = self.folder / stage / f"{name}.json"
            if path.is_file() and read_json(path).get("key") == key:
                return path
        return None

    def read(self, path: Path) -> dict[str, Any]:
        record = read_json(path)
        with np.load(path.with_suffix(".npz")) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return {**record, "arrays": {k: v for k, v in arrays.items() if not k.startswith("shift:")},
                "shift_arrays": {k[6:]: v for k, v in arrays.items() if k.startswith("shift:")}}

    def write(self, stage: str, name: str, record: dict[str, Any], *, arrays: dict[str, np.ndarray],
              shift_arrays: dict[str, np.ndarray]) -> Path:
        """Write the record (npz, then JSON; step 2). Test arrays keep their dtype; shift arrays go to float16."""
        folder = self.stage_folder(stage)
        folder.mkdir(parents=True, exist_ok=True)
        packed = {**arrays, **{f"shift:{k}": np.asarray(v, dtype=np.float16) for k, v in shift_arrays.items()}}
        write_npz_compressed(folder / f"{name}.npz", **packed)
        path = folder / f"{name}.json"
        write_json(path, record)
        return path


def deflated(path: Path) -> bool:
    """True when every member of the npz at `path` is deflated."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return all(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())


def compact(root: Path) -> tuple[int, int, int]:
    """Deflate every npz under ``<root>/runs`` that is not yet (step 5), atomically, after checking that the
    deflated file reads back the same arrays (dtype and bits). Returns (files rewritten, their bytes before,
    after); a second call rewrites nothing."""
    rewritten, before, after = 0, 0, 0
    for path in sorted((root / "runs").rglob("*.npz")):
        if path.name.startswith(".") or deflated(path):  # a dot file: a staged copy a crash left behind
            continue
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        staged = path.with_name(f".{path.name}.deflate.npz")
        write_npz_compressed(staged, **arrays)
        with np.load(staged) as npz:
            same = sorted(npz.files) == sorted(arrays) and all(
                npz[k].dtype == arrays[k].dtype and np.array_equal(npz[k], arrays[k], equal_nan=True)
                for k in arrays)
        if not same:
            staged.unlink()
            raise RuntimeError(f"{path}: the deflated copy reads back different arrays; the record is unchanged")
        before += path.stat().st_size
        after += staged.stat().st_size
        staged.replace(path)
        rewritten += 1
    return rewritten, before, after


def folder_digest(folder: Path) -> str:
    """md5 over every file's name and bytes under `folder` (sorted): the shift sets' content."""
    digest = hashlib.md5()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def host_info(*, device: str, precision: str) -> dict[str, Any]:
    """Where and how a run ran: the machine (host name, CPU/GPU, threads), the sitting (the kernel's boot id:
    one per machine start), the commit, the precision ``auto`` resolved to, and the UTC time."""
    import torch

    return {"host": socket.gethostname(), "machine": platform.machine(), "device": device,
            "threads": torch.get_num_threads(), "sitting": _boot_id(), "commit": _commit(),
            "precision": precision, "torch": torch.__version__,
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def iter_records(root: Path) -> Iterable[tuple[Path, dict[str, Any]]]:
    """Every record JSON under ``<root>/runs`` (no arrays)."""
    for path in sorted((root / "runs").glob("*/*/*/*.json")):
        yield path, read_json(path)


def store_summary(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts for the README's run-time line: records, distinct hosts, machine boots (a machine that keeps its
    boot id across sittings makes this a lower bound on them), code commits, the first and last finish time
    (UTC), training seconds (failed restart attempts included, as each row's ``train_seconds`` counts them)."""
    records = list(records)
    finished = sorted(str(r["ran"]["finished_utc"]) for r in records if r["ran"].get("finished_utc"))
    return {"runs": len(records),
            "hosts": len({(r["ran"]["host"], r["ran"]["device"]) for r in records}),
            "sittings": len({r["ran"]["sitting"] for r in records}),  # boot ids: a lower bound on sittings
            "commits": len({r["ran"].get("commit") for r in records}),
            "first_utc": finished[0] if finished else None, "last_utc": finished[-1] if finished else None,
            "train_seconds": float(sum(r["row"].get("train_seconds", 0.0) for r in records))}


def store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "runs").rglob("*") if p.is_file())
