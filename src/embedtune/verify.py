"""The run store's audit and progress: which planned runs it holds, and whether stored runs reproduce.

    python -m embedtune.verify status                 # per task × method: planned runs, stored, to train
    python -m embedtune.verify runs --n 5 --seed 0    # retrain 5 stored runs (seeded pick), compare, report
    python -m embedtune.verify compact                # deflate the store's npz files written without it

Protocol of ``runs`` (`make verify-runs N=5`): among the records whose key is current (the same key the
stages would look up today: same config, data, subset, weights and training code), draw `n` at random with
`seed`; retrain each from scratch without reading or writing the store; compare the stored and retrained
main test metric, every test metric, and the test probabilities. A run retrained on the machine class that
made it (same device name and precision) must match within ``--same-host-tolerance`` (CPU training here is
deterministic: default 1e-6); on another machine the arithmetic differs (bf16 kernels, thread counts), so
the main metric must match within ``--tolerance`` (default 0.02, i.e. 2 points), which is far below a
seed's spread. The table goes to ``reports/verify-runs.md`` (atomically); the exit status is 1 when any
run differs beyond its tolerance.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .io import write_text
from .params import Params, load_params
from .registry import metric_names
from .store import STAGES, RunStore, record_name


def _contexts(params: Params, root: Path, *, missing: dict[tuple[str, str], str] | None = None
              ) -> dict[tuple[str, str], Any]:
    """Stage contexts per task × method. With `missing` (a dict to fill), a pair whose inputs are absent
    (no prepared data yet, or lp_ft before the probe stage) is noted there with the error instead of
    stopping the whole listing."""
    from .runs import stage_context

    out = {}
    for task in params.tasks:
        for method in params.scale.finetune.methods:
            try:
                out[(task, method)] = stage_context(params, task, method, root=root, progress=False)
            except FileNotFoundError as err:
                if missing is None:
                    raise
                missing[(task, method)] = str(err)
    return out


def planned(params: Params, root: Path, *, missing: dict[tuple[str, str], str] | None = None
            ) -> list[dict[str, Any]]:
    """Every run the active profile's finetune stages ask for, with its key and whether the store holds it
    (search runs are not listed: their grid depends on the scores). Pairs whose inputs are absent go to
    `missing` when given (see `_contexts`)."""
    from .paths import TaskPaths
    from .plan import chosen_lr, tuned_runs
    from .runs import run_key_for

    out = []
    for (task, method), ctx in _contexts(params, root, missing=missing).items():
        hparams = TaskPaths(root, task).hparams(method)
        store = RunStore(root, task, method)
        for seed, budget in tuned_runs(ctx.subsets):
            lr = chosen_lr(hparams, method, budget=budget) if hparams.is_file() else None
            held = False
            if lr is not None:
                for restarts in {params.scale.finetune.lr_restarts, 0}:
                    key = run_key_for(ctx, seed=seed, budget=budget, lr=lr, restarts=restarts)
                    held = held or store.find(record_name(seed=seed, budget=budget, lr=lr, key=key), key) is not None
            out.append({"task": task, "method": method, "seed": seed, "budget": budget, "lr": lr, "stored": held})
    return out


def current_records(params: Params, root: Path, contexts: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
    """Stored records whose key equals today's key for their (seed, budget, lr, restarts)."""
    from .runs import run_key_for

    found = []
    for (task, method), ctx in contexts.items():
        for stage in STAGES:
            for path in sorted(RunStore(root, task, method).stage_folder(stage).glob("*.json")):
                record = RunStore(root, task, method).read(path)
                row = record["row"]
                for restarts in {params.scale.finetune.lr_restarts, 0}:
                    key = run_key_for(ctx, seed=int(row["seed"]), budget=int(row["budget"]),
                                      lr=float(row["lr_searched"]), restarts=restarts)
                    if key == record["key"]:
                        found.append({"path": path, "record": record, "restarts": restarts, "ctx": ctx})
                        break
    return found


def compare_run(stored: dict[str, Any], fresh: dict[str, Any], *, main_metric: str, multi: bool) -> dict[str, float]:
    """|stored − retrained| for the main metric, the largest over every test metric, and over the test
    probabilities."""
    names = [n for n in metric_names(multi) if n in stored["row"]]
    metric_diffs = [abs(float(stored["row"][n]) - float(fresh["row"][n])) for n in names]
    probs = np.max(np.abs(np.asarray(stored["arrays"]["probs"], np.float64)
                          - np.asarray(fresh["arrays"]["probs"], np.float64)))
    return {"main": abs(float(stored["row"][main_metric]) - float(fresh["row"][main_metric])),
            "metrics": float(np.nanmax(metric_diffs)) if metric_diffs else 0.0, "probs": float(probs)}


def verify_runs(params: Params, root: Path, *, n: int, seed: int, tolerance: float,
                same_host_tolerance: float) -> tuple[list[dict[str, Any]], bool]:
    """Retrain `n` seeded-random current records (module docstring); rows for the report and overall pass."""
    from .runs import _train_and_score

    contexts = _contexts(params, root)
    candidates = current_records(params, root, contexts)
    picked = random.Random(seed).sample(candidates, min(n, len(candidates)))
    rows, ok_all = [], True
    for item in picked:
        record, ctx = item["record"], item["ctx"]
        row = record["row"]
        fresh = _train_and_score(ctx, seed=int(row["seed"]), budget=int(row["budget"]),
                                 lr=float(row["lr_searched"]), restarts=item["restarts"], progress=False,
                                 score_shift=False, identity=record["key"])
        metric = params.task(ctx.task).main_metric
        diff = compare_run(record, fresh, main_metric=metric, multi=ctx.multi)
        same = (record["ran"]["device"] == fresh["ran"]["device"]
                and record["ran"]["precision"] == fresh["ran"]["precision"])
        tol = same_host_tolerance if same else tolerance
        ok = diff["main"] <= tol and (not same or diff["metrics"] <= tol)
        ok_all &= ok
        rows.append({"task": ctx.task, "method": ctx.method, "seed": int(row["seed"]), "budget": int(row["budget"]),
                     "lr": float(row["lr"]), "metric": metric, "stored": float(row[metric]),
                     "retrained": float(fresh["row"][metric]), "diff_main": diff["main"],
                     "diff_metrics": diff["metrics"], "diff_probs": diff["probs"],
                     "stored_on": f"{record['ran']['device']}, {record['ran']['precision']}",
                     "retrained_on": f"{fresh['ran']['device']}, {fresh['ran']['precision']}",
                     "tolerance": tol, "ok": ok})
    return rows, ok_all


def verify_report(rows: list[dict[str, Any]], *, n: int, seed: int, candidates_note: str, ok: bool) -> str:
    head = ("| task | method | seed | labels | LR | metric | stored | retrained | Δ main | max Δ metric | "
            "max Δ prob | stored on | retrained on | tolerance | within |\n" + "| --- " * 15 + "|\n")
    body = "".join(
        f"| {r['task']} | {r['method']} | {r['seed']} | {r['budget']:,} | {r['lr']:.3g} | {r['metric']} | "
        f"{r['stored']:.4f} | {r['retrained']:.4f} | {r['diff_main']:.2g} | {r['diff_metrics']:.2g} | "
        f"{r['diff_probs']:.2g} | {r['stored_on']} | {r['retrained_on']} | {r['tolerance']:g} | "
        f"{'yes' if r['ok'] else '**no**'} |\n" for r in rows)
    verdict = "every retrained run is within its tolerance" if ok else "**at least one run differs beyond its tolerance**"
    return (f"# Run store audit (`make verify-runs N={n} SEED={seed}`)\n\n"
            f"{len(rows)} stored runs drawn at random (seed {seed}) among {candidates_note}, retrained from "
            f"scratch without the store and scored on the test split (protocol: `embedtune.verify`). "
            f"Result: {verdict}.\n\n" + head + body)


def main(argv: list[str] | None = None) -> int:
    from .entry import guarded

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["status", "runs", "compact"])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--same-host-tolerance", type=float, default=1e-6)
    parser.add_argument("--report", type=Path, default=Path("reports/verify-runs.md"))
    args = parser.parse_args(argv)
    status = {"ok": True}

    def call() -> None:
        if args.command == "compact":
            from .store import compact, store_bytes

            files, before, after = compact(args.root)
            print(f"deflated {files} npz files: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB; the run store "
                  f"holds {store_bytes(args.root) / 1e6:.1f} MB")
            return
        params = load_params(args.params)
        if args.command == "status":
            missing: dict[tuple[str, str], str] = {}
            plan = planned(params, args.root, missing=missing)
            print(status_table(plan))
            for (task, method), why in sorted(missing.items()):
                print(f"{task}/{method}: not counted yet: {why}")
            return
        rows, ok = verify_runs(params, args.root, n=args.n, seed=args.seed, tolerance=args.tolerance,
                               same_host_tolerance=args.same_host_tolerance)
        note = f"the current records of profile `{params.profile}`"
        write_text(args.root / args.report, verify_report(rows, n=args.n, seed=args.seed, candidates_note=note,
                                                          ok=ok))
        for r in rows:
            print(f"{r['task']}/{r['method']} s{r['seed']} b{r['budget']}: stored {r['stored']:.4f} retrained "
                  f"{r['retrained']:.4f} |Δ| {r['diff_main']:.2g} (max over metrics {r['diff_metrics']:.2g}, "
                  f"probs {r['diff_probs']:.2g}) {'ok' if r['ok'] else 'BEYOND TOLERANCE ' + str(r['tolerance'])}")
        status["ok"] = ok

    code = guarded(call)
    return code or (0 if status["ok"] else 1)


def status_table(plan: list[dict[str, Any]]) -> str:
    """Per task × method: planned runs, held by the store, left to train."""
    from collections import Counter

    total, held = Counter(), Counter()
    for p in plan:
        total[(p["task"], p["method"])] += 1
        held[(p["task"], p["method"])] += bool(p["stored"])
    lines = [f"{'task':<12}{'method':<10}{'planned':>8}{'stored':>8}{'to train':>10}"]
    for (task, method), count in sorted(total.items()):
        lines.append(f"{task:<12}{method:<10}{count:>8}{held[(task, method)]:>8}{count - held[(task, method)]:>10}")
    lines.append(f"{'all':<22}{sum(total.values()):>8}{sum(held.values()):>8}"
                 f"{sum(total.values()) - sum(held.values()):>10}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
