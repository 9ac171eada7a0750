"""Stage entry points: each reads its inputs, calls the pure functions and writes its outputs atomically.

`dvc.yaml` maps one stage to one function here (notebooks call the same functions). Output layout:
``data/prepared/<task>/``, ``data/embeddings/<task>/``, ``data/probe_heads/<task>.npz`` (DVC cache);
``results/<task>/<method>.csv``, ``results/<task>/preds/<method>.npz``, ``metrics/<task>/<method>.json``
(committed to git).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .backbones import load_backbone
from .costs import device_name, measure, price
from .data import budget_subsets, load_prepared, prepare_task
from .embeddings import ensure_embeddings, load_embeddings
from .io import read_json, seed_everything, write_csv, write_json, write_npz
from .metrics import compute_metrics
from .params import Params, is_multi_label, task_kind
from .probe import classic_features, fit_classic, fit_probe

MAIN_METRICS = {"single": ("accuracy", "macro_f1", "balanced_accuracy", "auroc", "ece"),
                "multi": ("micro_f1", "macro_f1")}


@dataclass(frozen=True)
class TaskPaths:
    root: Path
    task: str

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared" / self.task

    @property
    def subsets(self) -> Path:
        return self.prepared / "subsets.json"

    @property
    def embeddings(self) -> Path:
        return self.root / "data" / "embeddings" / self.task

    @property
    def probe_heads(self) -> Path:
        return self.root / "data" / "probe_heads" / f"{self.task}.npz"

    @property
    def results(self) -> Path:
        return self.root / "results" / self.task

    @property
    def metrics(self) -> Path:
        return self.root / "metrics" / self.task

    @property
    def reports(self) -> Path:
        return self.root / "reports" / self.task

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints" / self.task

    def preds(self, method: str) -> Path:
        return self.results / "preds" / f"{method}.npz"


def run_key(seed: int | str, budget: int | str) -> str:
    return f"s{seed}_b{budget}"


def metric_names(multi_label: bool) -> tuple[str, ...]:
    return MAIN_METRICS["multi" if multi_label else "single"]


# ---------------------------------------------------------------------------------------------- prepare


def prepare_stage(params: Params, task: str, *, root: Path = Path(".")) -> dict[str, Any]:
    """Canonical splits, data card and the nested budget subsets for every seed."""
    paths = TaskPaths(root, task)
    scale = params.scale
    card = prepare_task(task, params.task(task), data_root=params.data_root, out_dir=paths.prepared,
                        max_train=scale.data.max_train, max_eval=scale.data.max_eval)
    data = load_prepared(paths.prepared)
    n_train = len(data.splits["train"])
    subsets = budget_subsets(data.splits["train"].y, sizes=(*scale.budgets.sizes, *scale.budgets.probe_only_sizes),
                             seeds=scale.budgets.seeds)
    shared = sorted({n_train if s == "all" else int(s) for s in scale.budgets.sizes})
    write_json(paths.subsets, {"sizes": sorted(int(s) for s in next(iter(subsets.values()))), "shared_sizes": shared,
                               "seeds": list(scale.budgets.seeds), "subsets": subsets,
                               "data_checksum": card["checksum"]})
    return card


def load_subsets(paths: TaskPaths) -> dict[str, Any]:
    if not paths.subsets.is_file():
        raise FileNotFoundError(f"{paths.subsets} not found; run the prepare stage first: dvc repro prepare")
    return read_json(paths.subsets)


# ---------------------------------------------------------------------------------------------- embed


def embed_stage(params: Params, task: str, *, root: Path = Path("."), device: str = "cpu",
                progress: bool = True) -> dict[str, Any]:
    """Embed train/val/test with the task's frozen backbone; a matching cache is reused."""
    seed_everything(0)
    paths = TaskPaths(root, task)
    data = load_prepared(paths.prepared)
    embed = params.scale.embed
    encoder = load_backbone(params.backbone_for(task), kind=task_kind(params.task(task)), pooling=embed.pooling,
                            max_length=embed.max_length, image_size=embed.image_size)
    with measure(device) as cost:
        arrays, rebuilt = ensure_embeddings(encoder, data, paths.embeddings, batch_size=embed.batch_size,
                                            device=device, progress=progress)
    meta = read_json(paths.embeddings / "meta.json")
    if rebuilt:
        rows = sum(len(a) for a in arrays.values())
        meta["cost"] = {"seconds": cost.seconds, "rows": rows, "seconds_per_row": cost.seconds / rows,
                        "peak_mem_mib": cost.peak_mem_mib, "device": device_name(device),
                        "backbone_params": sum(p.numel() for p in encoder.parameters())}
        write_json(paths.embeddings / "meta.json", meta)
    return meta


# ---------------------------------------------------------------------------------------------- probe


def aggregate(frame: pd.DataFrame, columns: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and standard deviation over seeds per budget: ``{budget: {metric: {mean, std, n}}}``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for budget, group in frame.groupby("budget"):
        out[str(budget)] = {}
        for col in columns:
            if col in group and pd.api.types.is_numeric_dtype(group[col]):
                values = group[col].dropna()
                out[str(budget)][col] = {"mean": float(values.mean()) if len(values) else float("nan"),
                                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                                         "n": int(len(values))}
    return out


def write_method_outputs(paths: TaskPaths, method: str, rows: list[dict[str, Any]],
                         preds: dict[str, np.ndarray], *, y_test: np.ndarray,
                         summary_columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).sort_values(["budget", "seed"]).reset_index(drop=True)
    write_npz(paths.preds(method), y_test=y_test, **preds)
    write_csv(paths.results / f"{method}.csv", frame)
    write_json(paths.metrics / f"{method}.json", aggregate(frame, summary_columns))
    return frame


def probe_stage(params: Params, task: str, *, root: Path = Path("."), device: str = "cpu") -> dict[str, pd.DataFrame]:
    """Linear probe on cached embeddings and the classic floor, for every budget × seed (probe.py's protocol)."""
    seed_everything(0)
    paths = TaskPaths(root, task)
    data = load_prepared(paths.prepared)
    subsets = load_subsets(paths)
    emb = load_embeddings(paths.embeddings, expect_checksum=data.source["checksum"])
    embed_meta = read_json(paths.embeddings / "meta.json")
    task_params = params.task(task)
    multi = is_multi_label(task_params) or data.multi_label
    names = metric_names(multi)
    y = {s: data.splits[s].y for s in ("train", "val", "test")}
    n_outputs = y["train"].shape[1] if multi else len(data.label_names)
    probe_cfg = params.scale.probe
    seconds_per_row = embed_meta.get("cost", {}).get("seconds_per_row")
    backbone_params = embed_meta.get("cost", {}).get("backbone_params")
    probe_rows, classic_rows, probe_preds, classic_preds, heads = [], [], {}, {}, {}
    for seed, by_size in subsets["subsets"].items():
        for budget, index in by_size.items():
            index = np.asarray(index)
            seed_everything(int(seed))
            with measure(device) as cost:
                model, info = fit_probe(emb["train"][index], y["train"][index], emb["val"], y["val"],
                                        c_grid=probe_cfg.c_grid, main_metric=task_params.main_metric,
                                        n_outputs=n_outputs, max_iter=probe_cfg.max_iter)
            start = time.perf_counter()
            probs = model.predict_proba(emb["test"])
            infer_seconds = time.perf_counter() - start
            thresholds = None if info["thresholds"] is None else np.asarray(info["thresholds"])
            metrics = compute_metrics(probs, y["test"], thresholds=thresholds)
            w_raw, b_raw = model.raw_head()
            heads[f"w_{run_key(seed, budget)}"], heads[f"b_{run_key(seed, budget)}"] = w_raw, b_raw
            probe_preds[run_key(seed, budget)] = probs.astype(np.float32)
            if thresholds is not None:
                probe_preds[f"thr_{run_key(seed, budget)}"] = thresholds
            trainable = int(model.weight.size + model.bias.size)
            probe_rows.append({
                "task": task, "method": "probe", "seed": int(seed), "budget": int(budget),
                **{k: v for k, v in metrics.items() if k in names}, "c": info["c"], "val_score": info["val_score"],
                "train_seconds": cost.seconds, "embed_seconds": None if seconds_per_row is None else
                seconds_per_row * (len(index) + len(y["val"])),
                "infer_seconds": infer_seconds, "infer_samples_per_s": len(y["test"]) / max(infer_seconds, 1e-9),
                "peak_mem_mib": cost.peak_mem_mib, "trainable_params": trainable,
                "total_params": trainable + (backbone_params or 0),
                "train_flops": info["flops"],
                "device": device_name(device), "cost": price(cost.seconds, params.scale.finetune.price_per_device_hour),
            })
            classic_rows.append(_classic_run(data, index, y, seed=int(seed), budget=int(budget), task=task,
                                             main_metric=task_params.main_metric, c_grid=probe_cfg.c_grid,
                                             names=names, preds=classic_preds, device=device))
    write_npz(paths.probe_heads, **heads)
    probe = write_method_outputs(paths, "probe", probe_rows, probe_preds, y_test=y["test"], summary_columns=names)
    classic = write_method_outputs(paths, "classic", classic_rows, classic_preds, y_test=y["test"],
                                   summary_columns=names)
    return {"probe": probe, "classic": classic}


def _classic_run(data: Any, index: np.ndarray, y: dict[str, np.ndarray], *, seed: int, budget: int, task: str,
                 main_metric: str, c_grid: tuple[float, ...], names: tuple[str, ...],
                 preds: dict[str, np.ndarray], device: str) -> dict[str, Any]:
    train_x = [data.splits["train"].x[i] for i in index] if data.kind == "text" else data.splits["train"].x[index]
    with measure("cpu") as cost:
        x_train, (x_val, x_test), n_features = classic_features(
            train_x, [data.splits["val"].x, data.splits["test"].x], kind=data.kind)
        model, info = fit_classic(x_train, y["train"][index], x_val, y["val"], c_grid=c_grid,
                                  main_metric=main_metric, seed=seed)
    start = time.perf_counter()
    probs = np.asarray(model.predict_proba(x_test), np.float64)
    infer_seconds = time.perf_counter() - start
    thresholds = None if info["thresholds"] is None else np.asarray(info["thresholds"])
    metrics = compute_metrics(probs, y["test"], thresholds=thresholds)
    preds[run_key(seed, budget)] = probs.astype(np.float32)
    if thresholds is not None:
        preds[f"thr_{run_key(seed, budget)}"] = thresholds
    n_out = y["train"].shape[1] if y["train"].ndim == 2 else probs.shape[1]
    return {"task": task, "method": "classic", "seed": seed, "budget": budget,
            **{k: v for k, v in metrics.items() if k in names}, "c": info["c"], "val_score": info["val_score"],
            "features": "tfidf-1-2gram" if data.kind == "text" else "raw-pixels", "n_features": n_features,
            "train_seconds": cost.seconds, "infer_seconds": infer_seconds,
            "infer_samples_per_s": len(y["test"]) / max(infer_seconds, 1e-9), "peak_mem_mib": cost.peak_mem_mib,
            "trainable_params": int(n_features * n_out + n_out), "total_params": int(n_features * n_out + n_out),
            "device": device_name("cpu")}


# ---------------------------------------------------------------------------------------------- finetune


def finetune_config(params: Params, task: str, method: str, seed: int) -> Any:
    from .engine import TrainConfig

    ft = params.scale.finetune
    lr = {"full": ft.lr, "lp_ft": ft.lp_ft_lr, "lora": ft.lora_lr}[method]
    if task_kind(params.task(task)) == "image" and method != "lora":
        lr *= ft.image_lr_scale  # whole-CNN fine-tuning takes ~10× a transformer's LR; LoRA's LR is shared
    return TrainConfig(method=method, epochs=ft.epochs, batch_size=ft.batch_size, lr=lr, head_lr=ft.head_lr,
                       lora_rank=ft.lora_rank, warmup_frac=ft.warmup_frac, weight_decay=ft.weight_decay,
                       grad_accum=ft.grad_accum, grad_clip=ft.grad_clip, patience=ft.patience,
                       min_steps=ft.min_steps, length_grouping=ft.length_grouping, class_weights=ft.class_weights, bn_mode=ft.bn_mode,
                       main_metric=params.task(task).main_metric, seed=seed)


def finetune_stage(params: Params, task: str, method: str, *, root: Path = Path("."),
                   progress: bool = True) -> dict[str, pd.DataFrame]:
    """Fine-tune with `method` on every budget × seed (engine.py's protocol) and score the test split once.

    Finished runs are kept under ``checkpoints/<task>/<method>/<run>/result.json`` keyed by the run's
    config and data, so a killed stage restarts where it stopped (and a half-done run from its last epoch).
    """
    import copy

    import torch
    from accelerate import Accelerator

    from .costs import count_flops, count_parameters
    from .engine import build_model, predict, train
    from .params import check_method

    check_method(method)
    seed_everything(0)
    paths = TaskPaths(root, task)
    data = load_prepared(paths.prepared)
    subsets = load_subsets(paths)
    task_params = params.task(task)
    multi = data.multi_label
    names = metric_names(multi)
    ft = params.scale.finetune
    embed = params.scale.embed
    base_encoder = load_backbone(params.backbone_for(task), kind=task_kind(task_params), pooling=embed.pooling,
                                 max_length=embed.max_length, image_size=embed.image_size)
    heads = None
    if method == "lp_ft":
        if not paths.probe_heads.is_file():
            raise FileNotFoundError(f"{paths.probe_heads} not found; lp_ft starts from the probe: dvc repro probe")
        with np.load(paths.probe_heads) as npz:
            heads = {k: npz[k] for k in npz.files}
    val = data.splits["val"]
    if ft.max_val is not None and len(val) > ft.max_val:
        from .data import cap_split

        val = cap_split(val, ft.max_val, seed=0)  # one fixed validation subset for every run
    test = data.splits["test"]
    n_outputs = data.splits["train"].y.shape[1] if multi else len(data.label_names)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision="bf16" if torch.cuda.is_available() else "no")
    device = accelerator.device
    rows, curves, preds = [], [], {}
    for seed, by_size in subsets["subsets"].items():
        for budget, index in by_size.items():
            if int(budget) not in subsets["shared_sizes"]:
                continue  # a probe-only budget
            key = run_key(seed, budget)
            config = finetune_config(params, task, method, int(seed))
            run_dir = paths.checkpoints / method / key
            run_id = {"config": config.digest(), "data": data.source["checksum"], "backbone": base_encoder.model_id,
                      "embed": [embed.max_length, embed.image_size, embed.pooling], "val": len(val)}
            done = run_dir / "result.json"
            if done.is_file() and (cached := read_json(done)).get("run_id") == run_id:
                rows.append(cached["row"])
                curves.extend(cached["curve"])
                with np.load(run_dir / "test_probs.npz") as npz:
                    preds.update({k.replace("probs", key): npz[k] for k in npz.files})
                continue
            seed_everything(int(seed))
            index = np.asarray(index)
            train_part = data.splits["train"].take(index)
            head = None if heads is None else (heads[f"w_{key}"], heads[f"b_{key}"])
            model = build_model(copy.deepcopy(base_encoder), n_outputs, method=method, lora_rank=ft.lora_rank,
                                probe_head=head)
            trainable, total = count_parameters(model)
            flops_per_sample = _flops_per_sample(model, train_part, device, count_flops)
            with measure(device) as cost:
                result = train(model, train_items=train_part.x, train_y=train_part.y, val_items=val.x, val_y=val.y,
                               config=config, checkpoint_dir=run_dir, accelerator=accelerator, progress=progress)
            start = time.perf_counter()
            probs = predict(model, model.encoder, test.x, batch_size=max(ft.batch_size, 64), device=device,
                            multi_label=multi)
            infer_seconds = time.perf_counter() - start
            metrics = compute_metrics(probs, test.y, thresholds=result.thresholds)
            samples_trained = result.steps * ft.batch_size * ft.grad_accum
            row = {"task": task, "method": method, "seed": int(seed), "budget": int(budget),
                   **{k: v for k, v in metrics.items() if k in names},
                   "best_epoch": result.best_epoch, "epochs_run": len(result.history), "val_score": result.best_val_score,
                   "steps": result.steps, "passes_per_epoch": result.extra["passes_per_epoch"],
                   "train_seconds": cost.seconds, "infer_seconds": infer_seconds,
                   "infer_samples_per_s": len(test) / max(infer_seconds, 1e-9),
                   "train_samples_per_s": samples_trained / max(cost.seconds, 1e-9),
                   "peak_mem_mib": cost.peak_mem_mib, "trainable_params": trainable, "total_params": total,
                   "train_flops": int(flops_per_sample * samples_trained), "device": device_name(device),
                   "cost": price(cost.seconds, ft.price_per_device_hour), "resumed_from_epoch": result.resumed_from_epoch}
            curve = [{"task": task, "method": method, "seed": int(seed), "budget": int(budget), **h}
                     for h in result.history]
            rows.append(row)
            curves.extend(curve)
            preds[key] = probs.astype(np.float32)
            extra = {}
            if result.thresholds is not None:
                preds[f"thr_{key}"] = extra["thr_probs"] = np.asarray(result.thresholds)
            write_npz(run_dir / "test_probs.npz", probs=preds[key], **extra)
            write_json(done, {"run_id": run_id, "row": row, "curve": curve})
            (run_dir / "state.pt").unlink(missing_ok=True)  # finished: the weights are not needed again
    frame = write_method_outputs(paths, method, rows, preds, y_test=test.y, summary_columns=names)
    curve_frame = pd.DataFrame(curves)
    write_csv(paths.results / "curves" / f"{method}.csv", curve_frame)
    return {method: frame, "curves": curve_frame}


def _flops_per_sample(model: Any, part: Any, device: Any, count_flops: Any) -> float:
    """Forward+backward FLOPs per sample on one representative micro-batch (eval mode: no BN update)."""
    items = part.x[:8]
    batch = {k: v.to(device) for k, v in model.encoder.prepare(items).items()}
    model.to(device).eval()
    flops = count_flops(lambda: model(**batch).float().sum().backward())
    model.zero_grad(set_to_none=True)
    return flops / len(items)
