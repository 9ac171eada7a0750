"""Which training schedule lets the tuned runs converge on this machine? A validation-only pilot.

Re-trains a few tuned runs of the committed `cpu` run (by default the kinds that ended still improving:
the single-seed budgets and 256 labels on medical) under other schedule settings, with the committed run's
learning rate, subset and selection rows, and reports what a schedule decides: optimizer steps, rounds,
the best round, whether the run was still improving at its last evaluation, the best selection score
and the training time. Test numbers are neither read nor reported, so this can choose a schedule without
looking at them. The committed run's own rows (`results/<task>/<method>.csv`) give the baseline.

    python benchmarks/schedule_pilot.py --variant rounds10:max_rounds=10 \\
        --variant rounds10-long:max_rounds=10,max_steps=320 --out reports/schedule-pilot.md

Stop rules replayed (``--replay stop_on:patience``): the trajectory of a run does not depend on its stop
rule (data order, dropout and the learning-rate horizon do not), so each variant's per-round selection
scores and validation losses also say where every rule that stops no later would have stopped
(`stopping.replay_stopping`): one long run per case prices several rules. Steps are the host-independent
cost; the committed run's steps are the baseline.

    python benchmarks/schedule_pilot.py --variant either:stop_on=either --replay val_loss:2 \\
        --replay metric:2 --replay either:1 --case sentiment,full,256,0 --out reports/schedule-pilot-3.md

Runs go to a scratch run cache (``--scratch``); the repository's own cache is never written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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


STOP_RULES = ("metric", "val_loss", "either", "noise")
SCHEDULES = ("horizon", "anneal", "retrain")


def parse_variant(text: str) -> tuple[str, dict[str, int | str]]:
    """'name:key=value,key=value' → (name, {key: value}); keys must be FinetuneParams schedule fields
    (integers, and `stop_on`: one of STOP_RULES)."""
    from embedtune.params import FinetuneParams

    name, _, body = text.partition(":")
    allowed = {"max_rounds", "max_steps", "min_steps", "evals_per_run", "patience", "max_epochs", "stop_on",
               "lr_schedule", "lr_floor"}
    settings: dict[str, int | str] = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in allowed or key not in {f.name for f in dataclasses.fields(FinetuneParams)}:
            raise SystemExit(f"--variant {text!r}: unknown key {key!r}; allowed: {sorted(allowed)}")
        if key == "stop_on" and value not in STOP_RULES:
            raise SystemExit(f"--variant {text!r}: stop_on={value!r}; allowed values: {list(STOP_RULES)}")
        if key == "lr_schedule" and value not in SCHEDULES:
            raise SystemExit(f"--variant {text!r}: lr_schedule={value!r}; allowed values: {list(SCHEDULES)}")
        settings[key] = value if key in ("stop_on", "lr_schedule") else float(value) if key == "lr_floor" else int(value)
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


def pilot(cases: list[tuple], variants: list[tuple[str, dict[str, int | str]]], *, scratch: Path) -> pd.DataFrame:
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
                          "lr_frac_at_best": float(r.get("lr_frac_at_best", float("nan"))),
                          "train_seconds": float(r["train_seconds"]), "wall_seconds": time.perf_counter() - start,
                          # the trajectory, one entry per round, for replaying other stop rules
                          "round_steps": json.dumps([int(h["step"]) for h in run["curve"]]),
                          "val_metrics": json.dumps([float(h["val_metric"]) for h in run["curve"]]),
                          "val_losses": json.dumps([float(h["val_loss"]) for h in run["curve"]]),
                          "cap": int(ft.max_rounds or ft.evals_per_run)}
            out.append({"task": task, "method": method, "budget": budget, "seed": seed, "variant": name,
                        **{k: settings.get(k) for k in ("max_rounds", "max_steps", "stop_on", "lr_schedule")},
                        **result})
            print({k: v for k, v in out[-1].items() if k not in ("round_steps", "val_metrics", "val_losses")},
                  flush=True)
    return pd.DataFrame(out)


def replay(frame: pd.DataFrame, rules: list[tuple[str, int]]) -> pd.DataFrame:
    """Per trained variant row and stop rule (stop_on, patience): where that rule would have stopped on the
    same trajectory (`stopping.replay_stopping`), with the committed run's steps beside it. A rule that
    would train past the rounds the variant ran is left out (``replayed`` False)."""
    from embedtune.stopping import replay_stopping

    committed = frame[frame["variant"] == "committed"].set_index(["task", "method", "budget", "seed"])["steps"]
    out = []
    for _, row in frame[frame["variant"] != "committed"].iterrows():
        steps, scores, losses = (json.loads(row[c]) for c in ("round_steps", "val_metrics", "val_losses"))
        for stop_on, patience in rules:
            stop = replay_stopping(scores, losses, stop_on=stop_on, patience=patience, max_rounds=int(row["cap"]))
            base = {"task": row["task"], "method": row["method"], "budget": row["budget"], "seed": row["seed"],
                    "variant": row["variant"], "rule": f"{stop_on}:{patience}",
                    "committed_steps": int(committed[(row["task"], row["method"], row["budget"], row["seed"])]),
                    "replayed": stop is not None}
            if stop is not None:
                base.update(steps=steps[stop.rounds - 1], rounds=stop.rounds, still_improving=stop.still_improving,
                            stop_reason=stop.stop_reason, val_score=scores[stop.best_round])
            out.append(base)
    return pd.DataFrame(out)


def replay_markdown(replayed: pd.DataFrame) -> list[str]:
    """Per variant and rule: how many runs it stops still improving, and its steps against the committed."""
    lines = ["", "## Stop rules replayed on the same trajectories", "",
             "Steps are optimizer steps summed over the runs the rule could be replayed on, against the committed "
             "run's steps on the same runs (the host-independent cost); the selection score is the best round's.",
             "", "| variant | rule | runs replayed | still improving | share | by budget (at the cap) | "
             "steps ÷ committed | mean selection score |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (variant, rule), group in replayed.groupby(["variant", "rule"], sort=False):
        done = group[group["replayed"]]
        if done.empty:
            lines.append(f"| {variant} | `{rule}` | 0 of {len(group)} | — | — | — | — | — |")
            continue
        flags = done["still_improving"].astype(bool)
        capped = flags & (done["stop_reason"] == "round cap")
        by_budget = ", ".join(f"{budget}: {int(flags[done['budget'] == budget].sum())}/{int((done['budget'] == budget).sum())}"
                              f" ({int(capped[done['budget'] == budget].sum())})"
                              for budget in sorted(done["budget"].unique()))
        ratio = done["steps"].sum() / done["committed_steps"].sum()
        lines.append(f"| {variant} | `{rule}` | {len(done)} of {len(group)} | {int(flags.sum())} | "
                     f"{flags.mean():.0%} | {by_budget} | {ratio:.2f} | {done['val_score'].mean():.4f} |")
    return lines


def to_markdown(frame: pd.DataFrame, variants: list[tuple[str, dict[str, int | str]]]) -> str:
    lines = ["# Schedule pilot (validation only)", "",
             "Generated by `python benchmarks/schedule_pilot.py`; machine: "
             f"{os.cpu_count()} cores. Test numbers are neither read nor reported. `committed` is the committed cpu "
             "run's row (run on the host that made the committed run, which may differ from this one: the "
             "`val_loss:2` replay below, the committed rule, shows how closely the trajectories agree).",
             "", "Variants: " + "; ".join(f"`{n}` = {s}" for n, s in variants) + ".", ""]
    cols = ["task", "method", "budget", "seed", "variant", "steps", "rounds", "best_step", "still_improving",
            "val_score", "train_seconds"] + (["lr_frac_at_best"] if "lr_frac_at_best" in frame else [])
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + " --- |" * len(cols))
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(f"{r[c]:.4f}" if c == "val_score" else f"{r[c]:.0f}"
                                       if c == "train_seconds" else f"{r[c]:.2f}" if c == "lr_frac_at_best"
                                       and r[c] == r[c] else "—" if c == "lr_frac_at_best" else str(r[c])
                                       for c in cols) + " |")
    lines += ["", "Per variant: runs still improving at their last evaluation, and training time summed.", ""]
    agg = frame.groupby("variant", sort=False).agg(runs=("steps", "size"), still_improving=("still_improving", "sum"),
                                                   train_minutes=("train_seconds", lambda s: s.sum() / 60),
                                                   mean_val=("val_score", "mean"))
    lines.append("| variant | runs | still improving | training (min) | mean selection score |")
    lines.append("| --- | --- | --- | --- | --- |")
    for name, r in agg.iterrows():
        lines.append(f"| {name} | {int(r['runs'])} | {int(r['still_improving'])} | {r['train_minutes']:.1f} | "
                     f"{r['mean_val']:.4f} |")
    lines += paired_against(frame, "horizon")
    return "\n".join(lines) + "\n"


def paired_against(frame: pd.DataFrame, reference: str) -> list[str]:
    """Each variant against `reference` on the cases both ran: mean selection-score difference (points),
    cases where it is lower, steps ratio, and the share of its runs whose kept round ran at ≤ 10% of the
    peak learning rate."""
    if reference not in set(frame["variant"]):
        return []
    keys = ["task", "method", "budget", "seed"]
    ref = frame[frame["variant"] == reference].set_index(keys)
    lines = ["", f"Against `{reference}` on the same cases (selection rows only):", "",
             "| variant | cases | mean Δ selection score (points) | cases lower | steps ÷ reference | "
             "kept round at ≤ 10% of peak LR |", "| --- | --- | --- | --- | --- | --- |"]
    for name, group in frame[~frame["variant"].isin([reference, "committed"])].groupby("variant", sort=False):
        both = group.set_index(keys).join(ref, rsuffix="_ref", how="inner")
        if both.empty:
            continue
        delta = 100 * (both["val_score"] - both["val_score_ref"])
        annealed = (both["lr_frac_at_best"] <= 0.1 + 1e-9).mean() if "lr_frac_at_best" in both else float("nan")
        lines.append(f"| {name} | {len(both)} | {delta.mean():+.2f} | {int((delta < 0).sum())} | "
                     f"{both['steps'].sum() / both['steps_ref'].sum():.2f} | {annealed:.0%} |")
    return lines


def parse_rule(text: str) -> tuple[str, int]:
    """'stop_on:patience' → (stop_on, patience)."""
    stop_on, _, patience = text.partition(":")
    if stop_on not in STOP_RULES or not patience.isdigit() or int(patience) < 1:
        raise SystemExit(f"--replay {text!r}: expected stop_on:patience with stop_on in {list(STOP_RULES)} and "
                         "patience ≥ 1")
    return stop_on, int(patience)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True, help="name:key=value[,key=value]")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/embedtune-schedule-pilot"))
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "schedule-pilot.md")
    parser.add_argument("--case", action="append", default=None,
                        help="task,method,budget|all,seed (default: the kinds left still improving)")
    parser.add_argument("--replay", action="append", default=[],
                        help="stop_on:patience, a stop rule replayed on each variant's trajectories")
    parser.add_argument("--from-csv", type=Path, default=None,
                        help="re-render the table from a pilot's CSV (written beside --out) instead of training")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    variants = [parse_variant(v) for v in args.variant]
    rules = [parse_rule(r) for r in args.replay]
    cases = DEFAULT_CASES if not args.case else [
        (t, m, b if b == "all" else int(b), int(s)) for t, m, b, s in (c.split(",") for c in args.case)]
    if args.from_csv is not None:
        frame = pd.read_csv(args.from_csv).drop_duplicates(["task", "method", "budget", "seed", "variant"])
    else:
        frame = pilot(cases, variants, scratch=args.scratch)
        staged_csv = args.out.with_name(f".{args.out.stem}.csv.tmp")
        frame.to_csv(staged_csv, index=False)
        staged_csv.replace(args.out.with_suffix(".csv"))
    text = to_markdown(frame, variants)
    if rules:
        text += "\n".join(replay_markdown(replay(frame, rules))) + "\n"
    staged = args.out.with_name(f".{args.out.name}.tmp")
    staged.write_text(text)
    staged.replace(args.out)
    print(text)


if __name__ == "__main__":
    main()
