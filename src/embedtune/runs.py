"""Runs of the tuned methods (full, lp_ft, lora, partial): the shared context, one run, the run cache.
The search and finetune stages (`stages.search`, `stages.finetune`) call these.

Protocol (one selection set, search on validation, schedules that converge):
1. **Selection rows.** Every method — classic, probe and each tuned one — picks its hyperparameters, its
   stopping point and its multi-label thresholds on the same validation rows (`data.selection_index`: the whole
   validation split, or one seeded stratified subset of ``data.max_val`` rows for everyone).
2. **Search at pilots.** Each tuned method's learning rate is searched per task at every budget of
   ``finetune.search_budgets`` (at least a small and a large one; seed ``search_seed``) over
   ``finetune.lr_grid`` (images: × the image LR scale). A pick at an edge of the grid extends it by
   ×``lr_step`` beyond that edge, at most ``grid_extensions`` times; a pick still at the edge is recorded
   (``edge_limited``) and reported. A run uses the pick at the searched budget nearest its own on a log
   scale (ties → the smaller), for every seed (`search_stage` writes ``results/<task>/hparams/<m>.csv``;
   `finetune_stage` reads it); the search's runs count in the build cost.
3. **Runs** follow engine.py's schedule (evaluations on the selection rows, patience, best restored). A run
   that did not learn (`outputs.learned`: training loss at its last evaluation ≥ ``restart_loss_ratio`` ×
   its first round's, or a kept selection score no better than the model it started from — a rate too high
   for this seed and subset, Mosbach et al., 2021, on BERT fine-tuning's failed runs) restarts from the
   pretrained weights at the rate ÷ ``lr_step``, at most ``lr_restarts`` times; the attempt kept is the one
   with the best selection score, so a restart never replaces a better first attempt. Rows record the kept
   attempt's rate, the searched one, the restarts tried, which attempt was kept, ``learned`` and the start's
   score; the time of failed attempts
   counts in the run's cost. The search never restarts a run; a rate that did not learn loses to any that
   did, and a search whose every rate failed goes on below its smallest (`stages.search`).
   The test split and every shift set (shift.py) are scored once, after training, inside the run.
4. **Run store.** A finished run is one committed record under ``runs/<task>/<method>/<stage>/`` (`store`),
   reused on any host when its key matches (`run_identity`): the training config with the *requested*
   precision, the subset's row indices, the selection rows, the data checksum, the backbone's weights hash,
   for lp_ft the digest of what decides the probe heads it starts from (probe and embedding configs, probe
   code: `stages.probe.probe_inputs_digest`, carried in its heads file, so the stages need not declare the
   probe's params), the shift sets' content and the source of the modules that train.
   Editing any of them retrains. ``checkpoints/<task>/<method>/<run>/`` holds mid-run resume state only.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backbones import Encoder, load_backbone
from .costs import device_name, measure, price
from .data import TaskData, load_prepared, selection_index
from .io import seed_everything
from .metrics import compute_metrics
from .outputs import learned
from .params import Params, check_method, task_kind
from .paths import TaskPaths, load_subsets, run_key
from .registry import metric_names
from .shift import ShiftSet, read_shift_sets
from .stopping import still_improving
from .store import MissingRunError, RunStore, folder_digest, host_info, record_name, store_mode

# the modules whose code decides a tuned run's numbers (their bytes enter the run key)
TRAINING_MODULES = ("engine.py", "backbones.py", "partial.py", "metrics.py", "runs.py", "shift.py", "precision.py",
                    "ordering.py", "outputs.py", "batchnorm.py", "stopping.py")
def source_digest(modules: tuple[str, ...] = TRAINING_MODULES) -> str:
    here = Path(__file__).parent
    digest = hashlib.md5()
    for name in modules:
        digest.update(name.encode())
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def array_digest(*arrays: Any) -> str:
    digest = hashlib.md5()
    for a in arrays:
        digest.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return digest.hexdigest()


def run_identity(*, config_digest: str, subset: np.ndarray, selection: np.ndarray, data_checksum: str,
                 weights_hash: str, probe_inputs: dict[str, Any] | None, shift_digest: str,
                 source: str, extra: dict[str, Any]) -> str:
    """The run key (module docstring, step 4). `config_digest` is of the config with the requested precision."""
    parts = {"config": config_digest, "subset": array_digest(subset), "selection": array_digest(selection),
             "data": data_checksum, "weights": weights_hash, "probe": probe_inputs,
             "shift": shift_digest, "source": source, **extra}
    return hashlib.md5(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def train_config(params: Params, task: str, method: str, *, seed: int, lr: float) -> Any:
    """The engine's config: every field it shares with `FinetuneParams` is read from there (no copies)."""
    from .engine import TrainConfig
    from .precision import choose

    device = "cuda" if torch_cuda_available() else "cpu"
    return TrainConfig.from_params(params.scale.finetune, method=method, lr=lr, seed=seed,
                                   main_metric=params.task(task).main_metric,
                                   precision=choose(params.scale.finetune.precision, device))


def torch_cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@dataclass
class StageContext:
    """What every run of one (task, method) stage shares."""

    params: Params
    task: str
    method: str
    root: Path
    data: TaskData
    subsets: dict[str, Any]
    val: Any
    val_index: np.ndarray
    test: Any
    shift_sets: list[ShiftSet]
    shift_digest: str
    base_encoder: Encoder
    heads: dict[str, np.ndarray] | None
    accelerator: Any
    banks: dict[str, Any]  # partial: frozen lower-block outputs of train / val / test / each shift set
    source: str
    precision: str = "fp32"  # "bf16" or "fp32" (precision.choose)
    flops: dict[str, float] = field(default_factory=dict)  # per-item FLOPs of this run shape (flops.run_flops)
    progress: bool = True

    @property
    def multi(self) -> bool:
        return self.data.multi_label

    @property
    def n_outputs(self) -> int:
        return self.data.splits["train"].y.shape[1] if self.multi else len(self.data.label_names)


def stage_context(params: Params, task: str, method: str, *, root: Path, progress: bool = True) -> StageContext:
    """Load data, selection rows, shift sets, backbone (and for partial the lower-block banks)."""
    import torch
    from accelerate import Accelerator

    check_method(method)
    if method not in params.scale.finetune.methods:
        raise ValueError(f"method {method!r} is not in profiles.{params.profile}.finetune.methods "
                         f"{list(params.scale.finetune.methods)}; add it there or pick one of those")
    paths = TaskPaths(root, task)
    data = load_prepared(paths.prepared)
    subsets = load_subsets(paths)
    val_index = selection_index(data, params.scale.data.max_val)
    val = data.splits["val"].take(val_index)
    embed = params.scale.embed
    encoder = load_backbone(params.backbone_for(task), kind=task_kind(params.task(task)), pooling=embed.pooling,
                            max_length=embed.max_length, image_size=embed.image_size)
    heads = None
    if method == "lp_ft":
        if not paths.probe_heads.is_file():
            raise FileNotFoundError(f"{paths.probe_heads} not found; lp_ft starts from the probe: dvc repro probe")
        with np.load(paths.probe_heads) as npz:
            heads = {k: npz[k] for k in npz.files}
        if "inputs" not in heads:  # written before the heads file carried what made it
            raise ValueError(f"{paths.probe_heads} has no probe inputs digest; re-run the probe stage: "
                             f"dvc repro probe@{task}")
    shift_dir = paths.shift
    sets = read_shift_sets(shift_dir)
    shift_digest = folder_digest(shift_dir)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision="bf16" if torch.cuda.is_available() else "no")
    return StageContext(params=params, task=task, method=method, root=root, data=data, subsets=subsets, val=val,
                        val_index=val_index, test=data.splits["test"], shift_sets=sets, shift_digest=shift_digest,
                        base_encoder=encoder, heads=heads, accelerator=accelerator, banks={},
                        source=source_digest(), progress=progress)


def ensure_banks(ctx: StageContext) -> None:
    """partial: the frozen lower blocks' outputs for train / val / test / each shift set, built once per stage
    and only when a run trains (a stage whose runs are all stored never runs the backbone)."""
    if ctx.method != "partial" or "train" in ctx.banks:
        return
    from .partial import build_feature_bank

    encoder, data = ctx.base_encoder, ctx.data
    k = ctx.params.scale.finetune.partial_blocks[encoder.kind]
    batch = ctx.params.scale.embed.batch_size
    banks: dict[str, Any] = {}
    start = time.perf_counter()
    banks["test"] = build_feature_bank(encoder, data.splits["test"].x, top_k=k, batch_size=batch)
    banks["seconds_per_row"] = (time.perf_counter() - start) / max(len(data.splits["test"].y), 1)
    banks["train"] = build_feature_bank(encoder, data.splits["train"].x, top_k=k, batch_size=batch,
                                        progress=ctx.progress, desc="lower blocks: train")
    ensure_val_bank(ctx)
    for s in ctx.shift_sets:
        banks[f"shift:{s.name}"] = build_feature_bank(encoder, s.x, top_k=k, batch_size=batch)
    ctx.banks.update(banks)


def ensure_val_bank(ctx: StageContext) -> None:
    """partial: the selection rows' lower-block outputs only (what counting FLOPs needs)."""
    if ctx.method == "partial" and "val" not in ctx.banks:
        from .partial import build_feature_bank

        k = ctx.params.scale.finetune.partial_blocks[ctx.base_encoder.kind]
        ctx.banks["val"] = build_feature_bank(ctx.base_encoder, ctx.val.x, top_k=k,
                                              batch_size=ctx.params.scale.embed.batch_size)


def model_for(ctx: StageContext, key: str) -> Any:
    from .engine import build_model

    ft = ctx.params.scale.finetune
    encoder = copy.deepcopy(ctx.base_encoder)
    if ctx.method == "partial":
        from .partial import PartialEncoder

        encoder = PartialEncoder(encoder, ft.partial_blocks[encoder.kind])
    head = None if ctx.heads is None else (ctx.heads[f"w_{key}"], ctx.heads[f"b_{key}"])
    return build_model(encoder, ctx.n_outputs, method=ctx.method, lora_rank=ft.lora_rank, lora_alpha=ft.lora_alpha,
                       lora_targets=ft.lora_targets, probe_head=head)


def stage_items(ctx: StageContext, split: str, raw: Any) -> Any:
    """Raw items, or the partial method's bank for the same rows."""
    return ctx.banks[split] if ctx.method == "partial" else raw


def run_one(ctx: StageContext, *, seed: int, budget: int, lr: float, progress: bool = True,
            score_shift: bool = True, restarts: int | None = None, stage: str = "final") -> dict[str, Any]:
    """Train one run (or reuse its record from the run store) and score test and shift sets; see the module
    doc. `restarts` (default ``finetune.lr_restarts``; the search passes 0) bounds the restarts at a lower
    rate; `stage` names the store folder a new record goes to (``search`` or ``final``)."""
    ft = ctx.params.scale.finetune
    restarts = ft.lr_restarts if restarts is None else restarts
    store = RunStore(ctx.root, ctx.task, ctx.method)
    mode = store_mode()
    identity = run_key_for(ctx, seed=seed, budget=budget, lr=lr, restarts=restarts)
    name = record_name(seed=seed, budget=budget, lr=lr, key=identity)
    if mode != "cold":
        found = store.find(name, identity)
        if found is None and restarts:
            # a run allowed to restart whose first attempt learned is exactly the run without restarts (the
            # search's): reuse that record when it learned
            plain = run_key_for(ctx, seed=seed, budget=budget, lr=lr, restarts=0)
            found = store.find(record_name(seed=seed, budget=budget, lr=lr, key=plain), plain)
            if found is not None and not store.read(found)["row"].get("learned", True):
                found = None
        if found is not None:
            return {**store.read(found), "cached": True}
        if mode == "require":
            raise MissingRunError(
                f"run {ctx.task}/{ctx.method} seed {seed} budget {budget} lr {lr:.3g} is not in the run store "
                f"({store.folder}) and EMBEDTUNE_STORE=require forbids training; unset it to train the run")
    out = _train_and_score(ctx, seed=seed, budget=budget, lr=lr, restarts=restarts, progress=progress,
                           score_shift=score_shift, identity=identity)
    record = {k: v for k, v in out.items() if k not in ("arrays", "shift_arrays")}
    if not ctx.accelerator.is_main_process:  # under DDP every rank trained the same run; rank 0 writes it
        return {**record, "arrays": out["arrays"], "shift_arrays": out["shift_arrays"], "cached": False}
    path = store.write(stage, name, record, arrays=out["arrays"], shift_arrays=out["shift_arrays"])
    # what the stages use is what a later reuse reads back (float16 shift arrays included): cold = warm
    return {**store.read(path), "cached": False}


def did_learn(result: Any, ratio: float) -> bool:
    """`outputs.learned` on one attempt's history, its kept selection score and the score it started from."""
    return learned(result.history, ratio, start_score=result.extra.get("start_val_score"),
                   best_score=result.best_val_score)


def run_key_for(ctx: StageContext, *, seed: int, budget: int, lr: float, restarts: int) -> str:
    """The store key of one run (module docstring, step 4)."""
    import dataclasses

    ft = ctx.params.scale.finetune
    index = np.asarray(ctx.subsets["subsets"][str(seed)][str(budget)])
    requested = dataclasses.replace(train_config(ctx.params, ctx.task, ctx.method, seed=seed, lr=lr),
                                    precision=ft.precision)
    return run_identity(config_digest=requested.digest(), subset=index, selection=ctx.val_index,
                        data_checksum=ctx.data.source["checksum"], weights_hash=_weights_hash(ctx),
                        probe_inputs={"probe": str(ctx.heads["inputs"])} if ctx.method == "lp_ft" else None,
                        shift_digest=ctx.shift_digest, source=ctx.source,
                        extra={"embed": [ctx.params.scale.embed.max_length, ctx.params.scale.embed.image_size,
                                         ctx.params.scale.embed.pooling],
                               "partial_blocks": ft.partial_blocks,
                               "restarts": [restarts, ft.restart_loss_ratio if restarts else None]})


def _train_and_score(ctx: StageContext, *, seed: int, budget: int, lr: float, restarts: int, progress: bool,
                     score_shift: bool, identity: str) -> dict[str, Any]:
    """Train one run (mid-run state under ``checkpoints/``), score test and shift sets: the record's content."""
    from .costs import count_parameters
    from .engine import predict, train

    ensure_banks(ctx)
    ft = ctx.params.scale.finetune
    key = run_key(seed, budget)
    index = np.asarray(ctx.subsets["subsets"][str(seed)][str(budget)])
    config = train_config(ctx.params, ctx.task, ctx.method, seed=seed, lr=lr)
    run_dir = TaskPaths(ctx.root, ctx.task).checkpoints / ctx.method / f"{key}_lr{lr:.3g}"
    names = metric_names(ctx.multi)
    train_part = ctx.data.splits["train"].take(index)
    train_items = ctx.banks["train"][index] if ctx.method == "partial" else train_part.x
    device = ctx.accelerator.device
    attempt, used_lr = 0, lr
    retrain = ft.lr_schedule == "retrain"
    kept: dict[str, Any] | None = None  # the attempt kept: the best selection score among the attempts
    with measure(device) as cost:  # failed attempts and the length search count: they are what the run cost
        while True:
            seed_everything(seed)
            model = model_for(ctx, key)
            config = train_config(ctx.params, ctx.task, ctx.method, seed=seed, lr=used_lr)
            result = train(model, train_items=train_items, train_y=train_part.y,
                           val_items=stage_items(ctx, "val", ctx.val.x), val_y=ctx.val.y,
                           config=dataclasses.replace(config, lr_schedule="horizon") if retrain else config,
                           checkpoint_dir=run_dir if attempt == 0 else run_dir / f"restart{attempt}",
                           accelerator=ctx.accelerator, progress=progress)
            ok = did_learn(result, ft.restart_loss_ratio)
            if kept is None or result.best_val_score > kept["result"].best_val_score:
                # a restart replaces the earlier attempt only when it scores higher on the selection rows
                if kept is not None and device.type == "cuda":
                    kept["model"].to("cpu")  # the replaced attempt: off the device
                kept = {"result": result, "model": model, "lr": used_lr, "config": config, "learned": ok,
                        "attempt": attempt}
            elif device.type == "cuda":
                model.to("cpu")  # a restart that lost: its weights leave the device before the next attempt
            if attempt >= restarts or ok:
                break
            attempt += 1
            used_lr = lr / ft.lr_step ** attempt
        result, model, used_lr, config = kept["result"], kept["model"], kept["lr"], kept["config"]
        model.to(device)
        explore = result
        if retrain:  # a fresh run annealed to the floor at the length the first one chose; its weights are kept
            seed_everything(seed)
            model = model_for(ctx, key)
            length = max(explore.best_step, 1)
            result = train(model, train_items=train_items, train_y=train_part.y,
                           val_items=stage_items(ctx, "val", ctx.val.x), val_y=ctx.val.y,
                           config=dataclasses.replace(config, lr_schedule="anneal", min_steps=length,
                                                      max_steps=length, max_epochs=1, evals_per_run=1, max_rounds=1),
                           checkpoint_dir=run_dir / "final", accelerator=ctx.accelerator, progress=progress)
    trainable, total = count_parameters(model)
    if ctx.method == "partial":
        total = sum(p.numel() for p in ctx.base_encoder.parameters()) + sum(p.numel() for p in model.head.parameters())
    batch = max(ft.batch_size, 64)
    start = time.perf_counter()
    probs = predict(model, model.encoder, stage_items(ctx, "test", ctx.test.x), batch_size=batch, device=device,
                    multi_label=ctx.multi)
    infer_seconds = time.perf_counter() - start
    if ctx.method == "partial":  # serving runs the frozen lower blocks too (measured when the bank was built)
        infer_seconds += ctx.banks["seconds_per_row"] * len(ctx.test.y)
    thresholds = result.thresholds
    metrics = compute_metrics(probs, ctx.test.y, thresholds=thresholds)
    steps = result.steps + (explore.steps if retrain else 0)
    samples_trained = steps * ft.batch_size * ft.grad_accum
    row = {"task": ctx.task, "method": ctx.method, "seed": seed, "budget": budget, "lr": used_lr, "lr_searched": lr,
           "lr_restarts": attempt, "kept_attempt": kept["attempt"], "learned": kept["learned"],
           "start_val_score": explore.extra["start_val_score"],
           **{k: v for k, v in metrics.items() if k in names},
           "val_score": result.best_val_score, "n_val": len(ctx.val.y), "steps": steps,
           "planned_steps": explore.extra["planned_steps"], "best_step": result.best_step,
           "evaluations": len(result.history) + (len(explore.history) if retrain else 0),
           "still_improving": still_improving(explore.history),
           "lr_frac_at_best": _at_best(result, "lr_frac"), "val_se_at_best": _at_best(result, "val_se"),
           "stopped_early": explore.stopped_early, "stop_reason": explore.stop_reason,
           "length_search_steps": explore.steps if retrain else 0,
           "length_search_val_score": explore.best_val_score if retrain else float("nan"),
           "epochs_seen": samples_trained / max(len(index), 1), "precision": config.precision,
           "train_seconds": cost.seconds, "infer_seconds": infer_seconds,
           "infer_ms_per_1000": 1000 * 1000 * infer_seconds / max(len(ctx.test.y), 1),
           "train_samples_per_s": samples_trained / max(cost.seconds, 1e-9), "peak_mem_mib": cost.peak_mem_mib,
           "trainable_params": trainable, "total_params": total, "device": device_name(device),
           "cost": price(cost.seconds, ft.price_per_device_hour), "resumed_from_round": explore.resumed_from_epoch}
    if ctx.method == "partial":
        row["lower_blocks_seconds_per_row"] = ctx.banks["seconds_per_row"]
    # phase 1 = the length search (retrain) or the run itself; phase 2 = the kept, annealed retrain
    phases = [(1, explore.history)] + ([(2, result.history)] if retrain else [])
    curve = [{"task": ctx.task, "method": ctx.method, "seed": seed, "budget": budget, "lr": used_lr, "phase": phase,
              **h} for phase, history in phases for h in history]
    # the kept weights on the selection rows: decisions resample them (decision.py), never the test rows
    val_probs = predict(model, model.encoder, stage_items(ctx, "val", ctx.val.x), batch_size=batch, device=device,
                        multi_label=ctx.multi)
    arrays: dict[str, np.ndarray] = {"probs": probs, "val_probs": val_probs}
    if thresholds is not None:
        arrays["thresholds"] = np.asarray(thresholds)
    shift_rows, shift_arrays = [], {}
    if score_shift:
        for s in ctx.shift_sets:
            shift_probs = predict(model, model.encoder, stage_items(ctx, f"shift:{s.name}", s.x), batch_size=batch,
                                  device=device, multi_label=ctx.multi)
            shift_arrays[s.name] = shift_probs
            shift_metrics = compute_metrics(shift_probs, s.y, thresholds=thresholds)
            shift_rows.append({"task": ctx.task, "method": ctx.method, "seed": seed, "budget": budget,
                               "set": s.name, "shift": s.shift, "severity": s.severity, "rows": len(s.y),
                               **{k: v for k, v in shift_metrics.items() if k in names}})
    for state in [run_dir / "state.pt", *run_dir.glob("*/state.pt")]:
        state.unlink(missing_ok=True)  # finished: the record replaces the resume state
    for folder in sorted(p for p in run_dir.glob("*") if p.is_dir()) + [run_dir]:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return {"key": identity, "row": row, "curve": curve, "shift": shift_rows,
            "ran": host_info(device=device_name(device), precision=config.precision),
            "arrays": arrays, "shift_arrays": shift_arrays}


def _at_best(result: Any, key: str) -> float:
    """A per-round value (``lr_frac``: the LR as a fraction of its peak) at the kept round (NaN if none)."""
    at = [h.get(key, float("nan")) for h in result.history if h["epoch"] == result.best_epoch]
    return float(at[0]) if at else float("nan")


def _weights_hash(ctx: StageContext) -> str:
    if not hasattr(ctx, "_weights"):
        ctx._weights = ctx.base_encoder.weights_hash()  # type: ignore[attr-defined]
    return ctx._weights  # type: ignore[attr-defined]


def resolve_budget(ctx: StageContext, budget: int | str) -> int:
    n = len(ctx.data.splits["train"].y)
    value = n if budget == "all" else int(budget)
    if str(value) not in ctx.subsets["subsets"][str(ctx.subsets["seeds"][0])]:
        raise ValueError(f"finetune.search_budgets: {budget} is not a prepared budget; allowed values: "
                         f"{ctx.subsets['tuned_sizes']}")
    return value
