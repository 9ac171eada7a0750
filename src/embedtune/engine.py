"""One training engine for every method; methods differ only in what trains and how the head starts.

- ``full``: backbone and a freshly initialised head train (backbone LR ``lr``, head LR ``head_lr``).
- ``lp_ft``: the head starts from the linear probe of the same budget and seed (mapped to raw features),
  then everything trains at ``lp_ft_lr`` (Kumar et al., ICLR 2022).
- ``lora``: LoRA adapters (peft) on every attention and MLP projection of the encoder (text; the
  ``lora_targets`` param narrows them) or its 1×1 convolutions (CNN), scaled by ``alpha / rank``, plus
  the head; every original weight stays frozen.
- ``partial``: only the top k blocks (and the head) train; the frozen lower blocks' outputs are computed
  once per stage and cached (`partial.FeatureBank`), as in MAE's partial fine-tuning.

Schedule (`schedule`): a round is ``clip(max(min_steps, max_epochs × steps per pass), ≤ max_steps) /
evals_per_run`` optimizer steps. After every round the model is scored on the selection rows; training
stops after ``patience`` rounds without gain or at ``max_rounds`` rounds, and the best round's weights are
restored. Before the first step the model is scored once on the selection rows (``start_val_score``: chance
for a fresh head, the probe for lp_ft), so a run that ends no better than it began can be told (`outputs.learned`). A gain is what ``stop_on`` names (`stopping.round_gained`): the selection metric, the validation
loss, or ``either`` (the loss keeps a run going through the metric's chance dips on a few hundred rows; the
metric keeps it going while accuracy still climbs after the loss turns up from overconfidence). The
learning rate warms up, then (``lr_schedule: horizon``) decays linearly over the ``max_rounds`` horizon,
or (``anneal``) decays linearly to ``lr_floor`` × peak at the planned length and stays there in extension
rounds. Under ``anneal`` no run stops before its plan ends and the kept weights are the best among the
annealed rounds (learning rate ≤ 10% of peak), so every kept checkpoint comes from a finished schedule;
with ``stop_on: noise`` a round gains when its selection score beats every earlier round's by more than its
bootstrap standard error on the selection rows. That same signal marks a run ``still_improving`` under every
rule: its last round beat every earlier one by more than the noise (`stopping.still_improving`). The
data order is a concatenation of seeded permutations of the budget (one per pass, `training_order`).

The loop runs through `accelerate` (CPU, one GPU or DDP via ``accelerate launch``): AdamW (fused),
gradient accumulation and clipping, and a checkpoint after every round that a restarted run resumes from.
Data order and dropout are seeded by (seed, round), so a resumed run reproduces an uninterrupted one. A
non-finite loss stops the run; on a GPU an out-of-memory error halves the micro-batch and doubles
accumulation (the effective batch stays the same).

Under DDP (N processes) every optimizer step sees the same global batch as one process: each micro-batch
of ``batch_size`` items is split into N shards (rank r takes items r, r+N, …), DDP averages the
gradients, and every rank makes the same number of optimizer steps, so the learning-rate schedule counts
optimizer steps per rank and no rank waits on a missing all-reduce. A micro-batch with fewer than N items
(the short last batch of a pass) is padded by repeating its items, so every rank gets a shard. Every rank
evaluates the full selection set (the same weights give the same score, so all ranks stop together); only
the main process writes checkpoints (and, in the stages, results and reports).
Text micro-batches come from small length-sorted groups of each shuffled pass (`length_grouped_order`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Encoder, length_sorted_batches
from .batchnorm import recalibrate_batchnorm, set_batchnorm_mode
from .metrics import bootstrap_se, selection_score
from .ordering import rank_shard, raw_lengths, training_order
from .stopping import anneal_factor, round_gained, schedule, still_improving

ANNEALED = 0.1  # a round whose learning rate is at most this fraction of its peak has finished its schedule


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    method: str
    max_epochs: int = 3
    batch_size: int = 16
    lr: float = 5e-5
    head_lr: float = 1e-3
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] | None = None
    warmup_frac: float = 0.1
    weight_decay: float = 0.01
    grad_accum: int = 1
    grad_clip: float = 1.0
    patience: int = 2  # evaluations without gain before stopping
    # what patience watches: "metric" (selection metric), "val_loss" (smoother) or "either" (a round gains
    # when either improves, so a run never stops while the kept metric is at a new best)
    stop_on: str = "metric"
    lr_schedule: str = "horizon"  # "horizon" | "anneal" (module docstring)
    lr_floor: float = 0.05  # anneal: fraction of the peak LR from the planned length on
    min_steps: int = 0
    max_steps: int | None = None
    evals_per_run: int = 4
    max_rounds: int | None = None  # None = evals_per_run (no rounds beyond the planned length)
    length_grouping: int = 1
    class_weights: bool = True
    bn_mode: str = "frozen"  # "frozen" | "recalibrate" | "train" (see set_batchnorm_mode)
    precision: str = "fp32"  # "bf16": autocast in training and evaluation; "fp32" (precision.py resolves "auto")
    main_metric: str = "accuracy"
    seed: int = 0

    @classmethod
    def from_params(cls, finetune: Any, *, method: str, lr: float, seed: int, main_metric: str,
                    precision: str) -> TrainConfig:
        """Built from `params.FinetuneParams`: every field of the same name is taken from there (the resolved
        `precision` replaces the params' "auto")."""
        shared = {f.name: getattr(finetune, f.name) for f in fields(cls) if hasattr(finetune, f.name)}
        return cls(**{**shared, "method": method, "lr": lr, "seed": seed, "main_metric": main_metric,
                      "precision": precision})

    def digest(self) -> str:
        return hashlib.md5(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


@dataclass
class TrainResult:
    best_epoch: int  # best round (0-based)
    best_val_score: float
    history: list[dict[str, float]]
    thresholds: np.ndarray | None
    steps: int
    micro_batch: int
    grad_accum: int
    resumed_from_epoch: int | None = None
    best_step: int = 0
    still_improving: bool = False
    stopped_early: bool = False
    stop_reason: str = ""  # "patience" (no gain in `patience` rounds) or "round cap" (max_rounds reached)
    extra: dict[str, Any] = field(default_factory=dict)


class Classifier(nn.Module):
    """Encoder → dropout → linear head; logits (B, K)."""

    def __init__(self, encoder: Encoder, n_outputs: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.dim, n_outputs)

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.encoder(**batch)))


def build_model(encoder: Encoder, n_outputs: int, *, method: str, lora_rank: int = 8, lora_alpha: int | None = None,
                lora_targets: tuple[str, ...] | None = None,
                probe_head: tuple[np.ndarray, np.ndarray] | None = None, dropout: float = 0.1) -> Classifier:
    """A classifier whose trainable parameters are set by `method` (see the module docstring)."""
    model = Classifier(encoder, n_outputs, dropout=dropout)
    if method == "lp_ft":
        if probe_head is None:
            raise ValueError("lp_ft needs the linear probe's head for the same budget and seed (run the probe stage)")
        weight, bias = probe_head
        if weight.shape != tuple(model.head.weight.shape):
            raise ValueError(f"probe head shape {weight.shape} != model head {tuple(model.head.weight.shape)}")
        with torch.no_grad():
            model.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            model.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    if method == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        for p in model.encoder.parameters():
            p.requires_grad_(False)
        targets = lora_module_names(encoder, lora_targets)
        config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha or 2 * lora_rank, lora_dropout=0.0,
                            target_modules=targets)
        inject_adapter_in_model(config, model.encoder.model)
        for name, p in model.encoder.named_parameters():
            p.requires_grad_("lora_" in name)
    elif method in ("full", "lp_ft", "partial"):  # partial: the encoder holds only the top blocks
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        raise ValueError(f"method: bad value {method!r}; allowed values: ['full', 'lp_ft', 'lora', 'partial']")
    return model


def lora_module_names(encoder: Encoder, targets: tuple[str, ...] | None) -> list[str]:
    """Full names (inside ``encoder.model``) of the modules LoRA adapts: the encoder's default set, or those
    whose name ends with one of `targets`. A suffix that matches nothing is an error, not a silent no-op."""
    if targets is None:
        return encoder.lora_targets()
    supported = (nn.Linear, nn.Conv2d)
    names = [n for n, m in encoder.model.named_modules() if isinstance(m, supported)]
    unmatched = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unmatched:
        tails = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ValueError(f"finetune.lora_targets: {unmatched} match no linear/conv module of {encoder.model_id}; "
                         f"allowed suffixes include {tails[:30]}")
    return [n for n in names if any(n == t or n.endswith("." + t) for t in targets)]


def _param_groups(model: Classifier, config: TrainConfig) -> list[dict[str, Any]]:
    head = [p for p in model.head.parameters() if p.requires_grad]
    body = [p for p in model.encoder.parameters() if p.requires_grad]
    head_lr = config.lr if config.method == "lp_ft" else config.head_lr
    groups = [{"params": head, "lr": head_lr, "weight_decay": 0.0}]
    if body:
        groups.append({"params": body, "lr": config.lr, "weight_decay": config.weight_decay})
    return groups


def loss_weights(y: np.ndarray, n_outputs: int) -> torch.Tensor:
    """Class weights (single-label, inverse frequency, mean 1) or positive weights (multi-label, neg/pos
    clipped to [1, 50]; 1 for a label with no positive in the budget)."""
    if y.ndim == 2:
        pos = y.sum(0).astype(np.float64)
        neg = len(y) - pos
        return torch.as_tensor(np.where(pos > 0, np.clip(neg / np.maximum(pos, 1), 1.0, 50.0), 1.0), dtype=torch.float32)
    counts = np.bincount(y, minlength=n_outputs).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_outputs * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)


def _loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None, multi_label: bool) -> torch.Tensor:
    logits = logits.float()
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=weights)
    return F.cross_entropy(logits, target.long(), weight=weights)


def _probs(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    return torch.sigmoid(logits.float()) if multi_label else torch.softmax(logits.float(), dim=-1)


def predict(model: nn.Module, encoder: Encoder, items: Any, *, batch_size: int, device: torch.device,
            multi_label: bool, bf16: bool | None = None) -> np.ndarray:
    """Probabilities (N, K) in input order; length-sorted batches; bf16 autocast when `bf16` (default: on a
    GPU)."""
    bf16 = device.type == "cuda" if bf16 is None else bf16
    model.eval()
    out: np.ndarray | None = None
    order = list(length_sorted_batches(encoder.lengths(items), batch_size))
    with torch.inference_mode():
        for index in order:
            chunk = [items[i] for i in index] if isinstance(items, list) else items[index]
            batch = {k: v.to(device, non_blocking=True) for k, v in encoder.prepare(chunk).items()}
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(**batch)
            probs = _probs(logits.float(), multi_label).cpu().numpy()
            if out is None:
                out = np.zeros((len(items), probs.shape[1]), np.float64)
            out[index] = probs
    assert out is not None
    return out


def _finite_or_nan(score: float) -> float:
    """History stores an undefined metric as NaN (reported as such), never as -inf."""
    return score if math.isfinite(score) else float("nan")


def _val_loss(probs: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    if y.ndim == 2:
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    return float(-np.log(p[np.arange(len(y)), y]).mean())


def train(model: Classifier, *, train_items: Any, train_y: np.ndarray, val_items: Any, val_y: np.ndarray,
          config: TrainConfig, checkpoint_dir: Path | None = None, accelerator: Any | None = None,
          progress: bool = True, on_step: Callable[[int, int], None] | None = None) -> TrainResult:
    """Fine-tune `model` with the protocol in the module docstring; the best round's weights are loaded
    into `model` on return. `on_step(round, step)` is a test hook (e.g. to interrupt a run)."""
    from accelerate import Accelerator
    from tqdm import tqdm  # plain text bars: tqdm.auto warns (with the venv's path) in rendered notebooks
    from transformers import get_linear_schedule_with_warmup

    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available(),
                                             mixed_precision="bf16" if torch.cuda.is_available() else "no")
    if accelerator.num_processes > 1 and accelerator.ddp_handler is None:
        from accelerate.utils import DistributedDataParallelKwargs

        # parts of a backbone the classifier never uses (BERT's pooler under mean pooling) get no gradient:
        # DDP must not wait for them
        accelerator.ddp_handler = DistributedDataParallelKwargs(find_unused_parameters=True)
    device = accelerator.device
    multi_label = train_y.ndim == 2
    n_outputs = model.head.out_features
    weights = loss_weights(train_y, n_outputs).to(device) if config.class_weights else None
    micro_batch, grad_accum = config.batch_size, config.grad_accum
    n = len(train_y)
    plan = schedule(n, config)
    model.to(device)
    # one fused kernel for every parameter's AdamW update (CPU and CUDA); PyTorch's default on the CPU is a
    # Python loop over parameters (about a sixth of a MiniLM step on 2 cores)
    fused = device.type in ("cpu", "cuda") and all(p.dtype == torch.float32 for p in model.parameters())
    optimizer = torch.optim.AdamW(_param_groups(model, config), fused=fused or None)
    warmup = int(config.warmup_frac * plan.planned_steps)
    if config.lr_schedule == "anneal":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: anneal_factor(
            step, warmup=warmup, planned=plan.planned_steps, floor=config.lr_floor))
    else:
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, plan.total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    lengths = raw_lengths(raw, train_items) if config.length_grouping > 1 else None
    order = training_order(n, plan, config=config, lengths=lengths)  # every micro-batch of the run, in order

    state_path = checkpoint_dir / "state.pt" if checkpoint_dir else None
    start_round, history, best = 0, [], {"score": -math.inf, "epoch": -1, "state": None, "thresholds": None,
                                         "loss": math.inf}
    bad_rounds, steps_done, resumed, start = 0, 0, None, None
    if state_path is not None and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state["config"] == config.digest() and "start" in state:  # older states lack the start's score
            raw.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_round, history, best = state["epoch"] + 1, state["history"], state["best"]
            bad_rounds, steps_done = state["bad_epochs"], state["steps"]
            micro_batch, grad_accum = state["micro_batch"], state["grad_accum"]
            resumed, start = state["epoch"], state["start"]

    def save(round_index: int) -> None:
        if state_path is None or not accelerator.is_main_process:
            return
        state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_path.with_suffix(".tmp")
        torch.save({"config": config.digest(), "epoch": round_index, "model": raw.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history,
                    "best": best, "bad_epochs": bad_rounds, "steps": steps_done, "micro_batch": micro_batch,
                    "grad_accum": grad_accum, "start": start}, tmp)
        tmp.replace(state_path)

    if start is None:  # the model before its first step, on the selection rows: what a run must beat
        start_probs = predict(model, raw.encoder, val_items, batch_size=max(micro_batch, 64), device=device,
                              multi_label=multi_label, bf16=config.precision == "bf16")
        start = {"val_metric": float("nan"), "val_loss": float("nan")}  # a non-finite start: the first step says
        if np.isfinite(start_probs).all():
            start_score, _ = selection_score(start_probs, val_y, config.main_metric)
            start = {"val_metric": _finite_or_nan(start_score), "val_loss": _val_loss(start_probs, val_y)}
    per_round = plan.eval_every * config.batch_size * config.grad_accum  # items per round
    round_index = start_round
    anneal = config.lr_schedule == "anneal"
    planned_rounds = plan.planned_steps // plan.eval_every
    best_seen = max([h["val_metric"] for h in history if not math.isnan(h["val_metric"])], default=-math.inf)
    while round_index < plan.rounds and (bad_rounds < config.patience or (anneal and round_index < planned_rounds)):
        torch.manual_seed(config.seed * 100_003 + round_index)  # dropout stream of this round
        round_order = order[round_index * per_round:(round_index + 1) * per_round]
        round_start = time.perf_counter()
        snapshot = None
        if device.type == "cuda":  # kept to retry the round after an out-of-memory error
            snapshot = (copy.deepcopy(raw.state_dict()), copy.deepcopy(optimizer.state_dict()),
                        copy.deepcopy(scheduler.state_dict()), steps_done)
        try:
            losses, train_probs, train_targets, steps = _run_epoch(
                model, raw, optimizer, scheduler, accelerator, order=round_order, items=train_items, y=train_y,
                micro_batch=micro_batch, grad_accum=grad_accum, weights=weights, multi_label=multi_label,
                grad_clip=config.grad_clip, epoch=round_index, progress=progress, on_step=on_step, tqdm=tqdm,
                bn_mode=config.bn_mode, bf16=config.precision == "bf16")
        except torch.cuda.OutOfMemoryError:
            if micro_batch == 1 or snapshot is None:
                raise
            torch.cuda.empty_cache()
            raw.load_state_dict(snapshot[0])
            optimizer.load_state_dict(snapshot[1])
            scheduler.load_state_dict(snapshot[2])
            steps_done = snapshot[3]
            micro_batch, grad_accum = micro_batch // 2, grad_accum * 2
            accelerator.print(f"out of memory: micro-batch → {micro_batch}, accumulation → {grad_accum}")
            continue
        steps_done += steps
        if config.bn_mode == "recalibrate":
            recalibrate_batchnorm(raw, train_items, batch_size=max(micro_batch, 32), device=device)
        val_probs = predict(model, raw.encoder, val_items, batch_size=max(micro_batch, 64), device=device,
                            multi_label=multi_label, bf16=config.precision == "bf16")
        score, thresholds = selection_score(val_probs, val_y, config.main_metric)  # undefined → -inf
        train_score, _ = selection_score(train_probs, train_targets, config.main_metric)
        lr_frac = float(scheduler.get_last_lr()[0] / optimizer.param_groups[0]["initial_lr"])
        noise = bootstrap_se(val_probs, val_y, config.main_metric, thresholds)  # the selection rows' noise
        history.append({"epoch": round_index, "step": steps_done, "train_loss": float(np.mean(losses)),
                        "val_loss": _val_loss(val_probs, val_y), "train_metric": _finite_or_nan(train_score),
                        "val_metric": _finite_or_nan(score), "lr": float(scheduler.get_last_lr()[0]),
                        "lr_frac": lr_frac, "val_se": noise, "seconds": time.perf_counter() - round_start})
        val_loss = history[-1]["val_loss"]
        lowest_loss = min(best.get("loss", math.inf), val_loss)
        # noise: against every earlier round (annealed or not), so the plan's last round must beat warmer ones
        gained = round_gained(config.stop_on, score=score,
                              best_score=best_seen if config.stop_on == "noise" else best["score"],
                              val_loss=val_loss, lowest_loss=best.get("loss", math.inf), noise=noise)
        history[-1]["gained"] = bool(gained)
        best_seen = max(best_seen, score)
        keepable = not anneal or lr_frac <= ANNEALED + 1e-9
        if keepable and score > best["score"]:  # the kept weights: the best selection metric
            best = {"score": score, "epoch": round_index, "state": copy.deepcopy(raw.state_dict()),
                    "thresholds": thresholds, "step": steps_done}
        best["loss"] = lowest_loss
        if not anneal or round_index >= planned_rounds - 1:  # anneal: patience counts from the plan's last round
            bad_rounds = 0 if gained else bad_rounds + 1
        save(round_index)
        round_index += 1
    if best["state"] is not None:
        raw.load_state_dict(best["state"])
    return TrainResult(best_epoch=best["epoch"], best_val_score=best["score"], history=history,
                       thresholds=best["thresholds"], steps=steps_done, micro_batch=micro_batch,
                       grad_accum=grad_accum, resumed_from_epoch=resumed, best_step=int(best.get("step", 0)),
                       still_improving=still_improving(history),
                       stopped_early=len(history) < plan.rounds,
                       stop_reason="patience" if bad_rounds >= config.patience else "round cap",
                       extra={"planned_steps": plan.planned_steps, "max_steps": plan.total_steps,
                              "rounds": plan.rounds, "steps_per_pass": plan.steps_per_pass,
                              "start_val_score": start["val_metric"], "start_val_loss": start["val_loss"]})


def _run_epoch(model: nn.Module, raw: Classifier, optimizer: Any, scheduler: Any, accelerator: Any, *,
               order: np.ndarray, items: Any, y: np.ndarray, micro_batch: int, grad_accum: int,
               weights: torch.Tensor | None, multi_label: bool, grad_clip: float, epoch: int, progress: bool, bn_mode: str,
               on_step: Callable[[int, int], None] | None, tqdm: Any,
               bf16: bool = False) -> tuple[list[float], np.ndarray, np.ndarray, int]:
    device = accelerator.device
    model.train()
    set_batchnorm_mode(raw, bn_mode)
    losses, probs_seen, targets_seen = [], [], []
    batches = [order[i:i + micro_batch] for i in range(0, len(order), micro_batch)]
    # DDP: every rank takes its shard of every micro-batch (module docstring); one process takes it whole
    batches = [rank_shard(b, accelerator.process_index, accelerator.num_processes) for b in batches]
    step = 0
    bar = tqdm(total=len(batches), desc=f"epoch {epoch}", disable=not progress or not accelerator.is_main_process,
               leave=False, unit="batch")
    for i, index in enumerate(batches):
        chunk = [items[j] for j in index] if isinstance(items, list) else items[index]
        batch = {k: v.to(device, non_blocking=True) for k, v in raw.encoder.prepare(chunk).items()}
        target = torch.as_tensor(y[index]).to(device)
        last_of_group = (i + 1) % grad_accum == 0 or i + 1 == len(batches)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch)
        loss = _loss(logits.float(), target, weights, multi_label)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite training loss ({loss.item()}) at epoch {epoch}, micro-batch {i}; "
                                     "lower the learning rate, keep grad_clip > 0, or check the inputs for NaN")
        accelerator.backward(loss / grad_accum)
        if last_of_group:
            if grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if on_step is not None:
                on_step(epoch, step)
        losses.append(float(loss.detach()))
        probs_seen.append(_probs(logits.detach(), multi_label).cpu().numpy())
        targets_seen.append(y[index])
        bar.update(1)
    bar.close()
    return losses, np.concatenate(probs_seen), np.concatenate(targets_seen), step
