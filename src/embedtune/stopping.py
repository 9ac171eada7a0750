"""When a fine-tuning run stops: the patience rule of `engine.train`'s loop, and its replay on a recorded
trajectory (`benchmarks/schedule_pilot.py` prices several rules on one run)."""

from __future__ import annotations

import math
from dataclasses import dataclass


def round_gained(stop_on: str, *, score: float, best_score: float, val_loss: float, lowest_loss: float) -> bool:
    """Whether a round resets patience: a new best selection metric (``metric``), a new lowest validation
    loss (``val_loss``), or either (``either``)."""
    metric_gained, loss_gained = score > best_score, val_loss < lowest_loss
    return {"metric": metric_gained, "val_loss": loss_gained, "either": metric_gained or loss_gained}[stop_on]


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
