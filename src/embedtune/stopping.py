"""How long a fine-tuning run trains: its schedule (steps, rounds, the learning rate's shape), the patience
rule of `engine.train`'s loop, and its replay on a recorded trajectory (`benchmarks/schedule_pilot.py`
prices several rules on one run)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Schedule:
    steps_per_pass: int
    total_steps: int  # optimizer steps at most (the learning-rate horizon)
    eval_every: int  # optimizer steps per round
    rounds: int  # rounds at most
    planned_steps: int = 0  # the planned length (evals_per_run rounds)


def schedule(n_items: int, config: Any) -> Schedule:
    """Optimizer steps and evaluation rounds of a run (module docstring)."""
    steps_per_pass = max(1, math.ceil(n_items / (config.batch_size * config.grad_accum)))
    total = max(config.min_steps, config.max_epochs * steps_per_pass)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    total = max(total, 1)
    planned_rounds = max(1, min(config.evals_per_run, total))
    every = math.ceil(total / planned_rounds)
    rounds = max(planned_rounds, config.max_rounds or planned_rounds)
    return Schedule(steps_per_pass=steps_per_pass, total_steps=every * rounds, eval_every=every, rounds=rounds,
                    planned_steps=every * planned_rounds)


def anneal_factor(step: int, *, warmup: int, planned: int, floor: float) -> float:
    """``anneal``'s learning-rate multiplier at optimizer step `step`: linear warmup to 1 over `warmup`
    steps, linear decay to `floor` at `planned` steps, `floor` after."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if step >= planned:
        return floor
    return 1.0 - (1.0 - floor) * (step - warmup) / max(planned - warmup, 1)


def still_improving(history: list[dict[str, Any]]) -> bool:
    """Whether a run was still improving when it ended, whatever ended it: its last round's selection metric
    beat every earlier round's by more than that round's bootstrap standard error on the selection rows
    (``val_se``). One signal with ``stop_on: noise``; a gain inside the noise does not count."""
    scores = [h["val_metric"] for h in history[:-1] if not math.isnan(h["val_metric"])]
    if not history or not scores or math.isnan(history[-1]["val_metric"]):
        return False
    return bool(history[-1]["val_metric"] > max(scores) + history[-1].get("val_se", 0.0))


def round_gained(stop_on: str, *, score: float, best_score: float, val_loss: float, lowest_loss: float,
                 noise: float = 0.0) -> bool:
    """Whether a round resets patience: a new best selection metric (``metric``), a new lowest validation
    loss (``val_loss``), either (``either``), or a selection metric above the best so far by more than
    `noise`, its bootstrap standard error on the selection rows (``noise``)."""
    metric_gained, loss_gained = score > best_score, val_loss < lowest_loss
    return {"metric": metric_gained, "val_loss": loss_gained, "either": metric_gained or loss_gained,
            "noise": score > best_score + noise}[stop_on]


@dataclass(frozen=True)
class StopOutcome:
    rounds: int  # rounds trained
    best_round: int  # 0-based round of the best selection metric (the kept weights)
    still_improving: bool
    stop_reason: str  # "patience" or "round cap"


def replay_stopping(scores: list[float], losses: list[float], *, stop_on: str, patience: int,
                    max_rounds: int) -> StopOutcome | None:
    """Where `train` would stop given the per-round selection scores and validation losses of one trajectory
    (the same rule as its loop). The trajectory does not depend on the rule (data order, dropout and the
    learning-rate horizon do not), so one long run replays every rule that stops no later than it did.
    None when the rule would train past the rounds given (and they are fewer than `max_rounds`)."""
    best_score, lowest_loss, best_round, bad = -math.inf, math.inf, -1, 0
    for index, (score, loss) in enumerate(zip(scores, losses, strict=True)):
        if index >= max_rounds:
            break
        score = -math.inf if math.isnan(score) else score  # an undefined score (stored as NaN) never gains
        gained = round_gained(stop_on, score=score, best_score=best_score, val_loss=loss, lowest_loss=lowest_loss)
        if score > best_score:
            best_score, best_round = score, index
        lowest_loss = min(lowest_loss, loss)
        bad = 0 if gained else bad + 1
        rounds = index + 1
        if bad >= patience:
            return StopOutcome(rounds, best_round, best_round == index, "patience")
        if rounds == max_rounds:
            return StopOutcome(rounds, best_round, best_round == index, "round cap")
    return None
