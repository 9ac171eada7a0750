"""Which training schedule lets the tuned runs converge on this machine? A validation-only pilot.

Re-trains a few tuned runs of the committed `cpu` run (by default the kinds that ended still improving:
the single-seed budgets and 256 labels on medical) under other schedule settings, with the committed run's
learning rate, subset and selection rows, and reports what a schedule decides: optimizer steps, rounds,
the best round, whether the run was still improving at its last evaluation, the best selection score
and the training time. The test split is not scored, so this can choose a schedule without looking at
test numbers. The committed run's own rows (`results/<task>/<method>.csv`) give the baseline.

    python benchmarks/schedule_pilot.py --variant rounds10:max_rounds=10 \\
        --variant rounds10-long:max_rounds=10,max_steps=320 --out reports/schedule-pilot.md

Runs go to a scratch run cache (``--scratch``); the repository's own cache is never written.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# (task, method, budget or "all", seed): the kinds of run the committed cpu run left still improving
DEFAULT_CASES = [("medical", "full", 256, 0), ("medical", "lora", 256, 1), ("medical", "full", 1024, 0),
                 ("medical", "partial", "all", 0), ("sentiment", "full", "all", 0),
                 ("sentiment", "lora", 1024, 0), ("sentiment", "partial", "all", 0),
                 ("legal", "full", "all", 0)]


def parse_variant(text: str) -> tuple[str, dict[str, int]]:
    """'name:key=value,key=value' → (name, {key: int}); keys must be FinetuneParams schedule fields."""
    from embedtune.params import FinetuneParams

    name, _, body = text.partition(":")
    allowed = {"max_rounds", "max_steps", "min_steps", "evals_per_run", "patience", "max_epochs"}
    settings = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in allowed or key not in {f.name for f in dataclasses.fields(FinetuneParams)}:
            raise SystemExit(f"--variant {text!r}: unknown key {key!r}; allowed: {sorted(allowed)}")
        settings[key] = int(value)
    if not name or not settings:
        raise SystemExit(f"--variant {text!r}: expected name:key=value[,key=value]")
    return name, settings


def scratch_root(scratch: Path) -> Path:
    """A root that reads the repository's prepared data, shift sets and probe heads and keeps its own cache."""
    (scratch / "data").mkdir(parents=True, exist_ok=True)
    for name in ("prepared", "shift", "probe_heads", "embeddings"):
        link = scratch / "data" / name
        if not link.exists():
            link.symlink_to(ROOT / "data" / name)
    return scratch


def committed_row(task: str, method: str, budget: int, seed: int) -> pd.Series:
    rows = pd.read_csv(ROOT / "results" / task / f"{method}.csv")
    hit = rows[(rows["budget"] == budget) & (rows["seed"] == seed)]
    if hit.empty:
        raise SystemExit(f"results/{task}/{method}.csv has no run at {budget} labels, seed {seed}; run `make repro`")
    return hit.iloc[0]


def pilot(cases: list[tuple], variants: list[tuple[str, dict[str, int]]], *, scratch: Path) -> pd.DataFrame:
    from embedtune.params import load_params
    from embedtune.runs import run_one, stage_context

    base = load_params(ROOT / "params.yaml", profile="cpu")
    root = scratch_root(scratch)
    out = []
    for task, method, budget_key, seed in cases:
        contexts = {}
        for name, settings in [("committed", {}), *variants]:
            ft = dataclasses.replace(base.scale.finetune, **settings)
            params = dataclasses.replace(base, profiles={**base.profiles,
                                                         "cpu": dataclasses.replace(base.scale, finetune=ft)})
            if method not in contexts:
                contexts[method] = stage_context(params, task, method, root=root, progress=False)
            ctx = dataclasses.replace(contexts[method], params=params)
            budget = len(ctx.data.splits["train"].y) if budget_key == "all" else int(budget_key)
            row = committed_row(task, method, budget, seed)
            if name == "committed":
                result = {"steps": int(row["steps"]), "rounds": int(row["evaluations"]),
                          "best_step": int(row["best_step"]), "still_improving": bool(row["still_improving"]),
                          "val_score": float(row["val_score"]), "train_seconds": float(row["train_seconds"])}
            else:
                start = time.perf_counter()
                run = run_one(ctx, seed=seed, budget=budget, lr=float(row["lr"]), progress=False,
                              score_shift=False)
                r = run["row"]
                result = {"steps": int(r["steps"]), "rounds": int(r["evaluations"]), "best_step": int(r["best_step"]),
                          "still_improving": bool(r["still_improving"]), "val_score": float(r["val_score"]),
                          "train_seconds": float(r["train_seconds"]), "wall_seconds": time.perf_counter() - start}
            out.append({"task": task, "method": method, "budget": budget, "seed": seed, "variant": name,
                        **{k: settings.get(k) for k in ("max_rounds", "max_steps")}, **result})
            print(out[-1], flush=True)
    return pd.DataFrame(out)


def to_markdown(frame: pd.DataFrame, variants: list[tuple[str, dict[str, int]]]) -> str:
    lines = ["# Schedule pilot (validation only)", "",
             "Generated by `python benchmarks/schedule_pilot.py`; machine: "
             f"{os.cpu_count()} cores. The test split was not scored. `committed` is the committed cpu run's row.",
             "", "Variants: " + "; ".join(f"`{n}` = {s}" for n, s in variants) + ".", ""]
    cols = ["task", "method", "budget", "seed", "variant", "steps", "rounds", "best_step", "still_improving",
            "val_score", "train_seconds"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + " --- |" * len(cols))
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(f"{r[c]:.4f}" if c == "val_score" else f"{r[c]:.0f}"
                                       if c == "train_seconds" else str(r[c]) for c in cols) + " |")
    lines += ["", "Per variant: runs still improving at their last evaluation, and training time summed.", ""]
    agg = frame.groupby("variant", sort=False).agg(runs=("steps", "size"), still_improving=("still_improving", "sum"),
                                                   train_minutes=("train_seconds", lambda s: s.sum() / 60),
                                                   mean_val=("val_score", "mean"))
    lines.append("| variant | runs | still improving | training (min) | mean selection score |")
    lines.append("| --- | --- | --- | --- | --- |")
    for name, r in agg.iterrows():
        lines.append(f"| {name} | {int(r['runs'])} | {int(r['still_improving'])} | {r['train_minutes']:.1f} | "
                     f"{r['mean_val']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True, help="name:key=value[,key=value]")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/embedtune-schedule-pilot"))
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "schedule-pilot.md")
    parser.add_argument("--case", action="append", default=None,
                        help="task,method,budget|all,seed (default: the kinds left still improving)")
    parser.add_argument("--from-csv", type=Path, default=None,
                        help="re-render the table from a pilot's CSV (written beside --out) instead of training")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    variants = [parse_variant(v) for v in args.variant]
    cases = DEFAULT_CASES if not args.case else [
        (t, m, b if b == "all" else int(b), int(s)) for t, m, b, s in (c.split(",") for c in args.case)]
    if args.from_csv is not None:
        frame = pd.read_csv(args.from_csv)
    else:
        frame = pilot(cases, variants, scratch=args.scratch)
        staged_csv = args.out.with_name(f".{args.out.stem}.csv.tmp")
        frame.to_csv(staged_csv, index=False)
        staged_csv.replace(args.out.with_suffix(".csv"))
    text = to_markdown(frame, variants)
    staged = args.out.with_name(f".{args.out.name}.tmp")
    staged.write_text(text)
    staged.replace(args.out)
    print(text)


if __name__ == "__main__":
    main()
