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
from .data import budget_subsets, build_prepared, load_prepared, write_prepared
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
    def shift(self) -> Path:
        return self.root / "data" / "shift" / self.task

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
    """Canonical splits, data card and the nested budget subsets for every seed.

    Everything is computed and validated in memory first (the budgets against the train split included),
    then the folder is written in one swap (`data.write_prepared`): bad input leaves the old folder as it was.
    """
    paths = TaskPaths(root, task)
    scale = params.scale
    data, card = build_prepared(task, params.task(task), data_root=params.data_root,
                                max_train=scale.data.max_train, max_eval=scale.data.max_eval)
    n_train = len(data.splits["train"])
    b = scale.budgets
    subsets = budget_subsets(data.splits["train"].y, sizes=(*b.sizes, *b.probe_only_sizes, *b.single_seed_sizes),
                             seeds=b.seeds)

    def resolve(sizes: tuple[int | str, ...]) -> list[int]:
        return sorted({n_train if s == "all" else int(s) for s in sizes})

    shared = resolve(b.sizes)
    single = [s for s in resolve(b.single_seed_sizes) if s not in shared]
    return write_prepared(data, card, paths.prepared, extra_json=lambda card: {paths.subsets.name: {
        "sizes": sorted(int(s) for s in next(iter(subsets.values()))), "shared_sizes": shared,
        "single_seed_sizes": single, "tuned_sizes": sorted({*shared, *single}), "n_train": n_train,
        "seeds": list(b.seeds), "subsets": subsets, "data_checksum": card["checksum"]}})


def load_subsets(paths: TaskPaths) -> dict[str, Any]:
    if not paths.subsets.is_file():
        raise FileNotFoundError(f"{paths.subsets} not found; run the prepare stage first: dvc repro prepare")
    return read_json(paths.subsets)


# ---------------------------------------------------------------------------------------------- shift


def shift_kinds(params: Params, task: str) -> tuple[str, ...]:
    from .shift import default_kinds

    task_params = params.task(task)
    return task_params.shift if task_params.shift is not None else default_kinds(task_kind(task_params))


def shift_stage(params: Params, task: str, *, root: Path = Path(".")) -> list[Any]:
    """Build the task's shift sets from its clean test split (shift.py) into data/shift/<task>/."""
    from .shift import build_shift_sets, write_shift_sets

    paths = TaskPaths(root, task)
    data = load_prepared(paths.prepared)
    cfg = params.scale.shift
    test = data.splits["test"]
    sets = build_shift_sets(shift_kinds(params, task), test_x=test.x, test_y=test.y, data_root=params.data_root,
                            label_map=params.task(task).label_map, label_names=data.label_names,
                            text_strengths=cfg.text_strengths, severities=cfg.severities, max_rows=cfg.max_rows,
                            seed=cfg.seed)
    write_shift_sets(sets, paths.shift)
    return sets


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
    """results/<task>/<method>.csv, full-precision test predictions (float64: no ties from rounding) and
    the metrics JSON."""
    frame = pd.DataFrame(rows).sort_values(["budget", "seed"]).reset_index(drop=True)
    write_npz(paths.preds(method), y_test=y_test, **{k: np.asarray(v, np.float64) for k, v in preds.items()})
    write_csv(paths.results / f"{method}.csv", frame)
    write_json(paths.metrics / f"{method}.json", aggregate(frame, summary_columns))
    return frame


def embed_shift_sets(params: Params, task: str, sets: list[Any], *, device: str = "cpu") -> dict[str, np.ndarray]:
    """Frozen-backbone embeddings of every shift set (the probe scores them; same encoder as the embed stage)."""
    from .backbones import encode

    embed = params.scale.embed
    encoder = load_backbone(params.backbone_for(task), kind=task_kind(params.task(task)), pooling=embed.pooling,
                            max_length=embed.max_length, image_size=embed.image_size)
    return {s.name: encode(encoder, s.x, batch_size=embed.batch_size, device=device, progress=False) for s in sets}


def probe_stage(params: Params, task: str, *, root: Path = Path("."), device: str = "cpu") -> dict[str, pd.DataFrame]:
    """Linear probe on cached embeddings and the classic floor, for every budget × seed (probe.py's protocol),
    selected on the shared selection rows; each run also scores every shift set."""
    from .shift import read_shift_sets
    from .tuning import selection_index

    seed_everything(0)
    paths = TaskPaths(root, task)
    data = load_prepared(paths.prepared)
    subsets = load_subsets(paths)
    emb = load_embeddings(paths.embeddings, expect_checksum=data.source["checksum"])
    embed_meta = read_json(paths.embeddings / "meta.json")
    task_params = params.task(task)
    multi = is_multi_label(task_params) or data.multi_label
    names = metric_names(multi)
    sel = selection_index(data, params.scale.data.max_val)
    y = {s: data.splits[s].y for s in ("train", "val", "test")}
    y["val"] = y["val"][sel]
    emb_val = emb["val"][sel]
    val_x = data.splits["val"].take(sel).x
    sets = read_shift_sets(paths.shift)
    shift_emb = embed_shift_sets(params, task, sets, device=device)
    n_outputs = y["train"].shape[1] if multi else len(data.label_names)
    probe_cfg = params.scale.probe
    ft = params.scale.finetune
    seconds_per_row = embed_meta.get("cost", {}).get("seconds_per_row")
    backbone_params = embed_meta.get("cost", {}).get("backbone_params")
    probe_rows, classic_rows, probe_preds, classic_preds, heads, shift_rows, hparams = [], [], {}, {}, {}, [], []
    pilot = (str(ft.search_seed), str(subsets["n_train"] if ft.search_budget == "all" else ft.search_budget))
    for seed, by_size in subsets["subsets"].items():
        for budget, index in by_size.items():
            index = np.asarray(index)
            seed_everything(int(seed))
            with measure(device) as cost:
                model, info = fit_probe(emb["train"][index], y["train"][index], emb_val, y["val"],
                                        c_grid=probe_cfg.c_grid, main_metric=task_params.main_metric,
                                        n_outputs=n_outputs, max_iter=probe_cfg.max_iter,
                                        grid_extensions=probe_cfg.grid_extensions)
            start = time.perf_counter()
            probs = model.predict_proba(emb["test"])
            infer_seconds = time.perf_counter() - start
            thresholds = None if info["thresholds"] is None else np.asarray(info["thresholds"])
            metrics = compute_metrics(probs, y["test"], thresholds=thresholds)
            w_raw, b_raw = model.raw_head()
            heads[f"w_{run_key(seed, budget)}"], heads[f"b_{run_key(seed, budget)}"] = w_raw, b_raw
            probe_preds[run_key(seed, budget)] = probs
            if thresholds is not None:
                probe_preds[f"thr_{run_key(seed, budget)}"] = thresholds
            trainable = int(model.weight.size + model.bias.size)
            # serving a prediction = embedding it (the backbone's forward) + the linear head
            serve_seconds = infer_seconds + (seconds_per_row or 0.0) * len(y["test"])
            probe_rows.append({
                "task": task, "method": "probe", "seed": int(seed), "budget": int(budget),
                **{k: v for k, v in metrics.items() if k in names}, "c": info["c"], "val_score": info["val_score"],
                "c_edge_limited": info["edge_limited"], "n_val": len(y["val"]),
                "train_seconds": cost.seconds, "embed_seconds": None if seconds_per_row is None else
                seconds_per_row * (len(index) + len(y["val"])),
                "infer_seconds": infer_seconds, "infer_ms_per_1000": 1e6 * serve_seconds / len(y["test"]),
                "peak_mem_mib": cost.peak_mem_mib, "trainable_params": trainable,
                "total_params": trainable + (backbone_params or 0),
                "train_flops": info["flops"],
                "device": device_name(device), "cost": price(cost.seconds, ft.price_per_device_hour),
            })
            for s in sets:
                shift_metrics = compute_metrics(model.predict_proba(shift_emb[s.name]), s.y, thresholds=thresholds)
                shift_rows.append(_shift_row(task, "probe", int(seed), int(budget), s, shift_metrics, names))
            classic_rows.append(_classic_run(data, index, y, seed=int(seed), budget=int(budget), task=task,
                                             main_metric=task_params.main_metric, c_grid=probe_cfg.c_grid,
                                             extensions=probe_cfg.grid_extensions, val_x=val_x, names=names,
                                             preds=classic_preds, sets=sets, shift_rows=shift_rows))
            if (seed, budget) == pilot:
                for method, path, picked, edge in (("probe", info["c_path"], info["c"], info["edge_limited"]),
                                                   ("classic", classic_rows[-1].pop("_c_path"), classic_rows[-1]["c"],
                                                    classic_rows[-1]["c_edge_limited"])):
                    hparams += [{"method": method, "hyperparameter": "C", "value": e["c"], "val_score": e["val_score"],
                                 "chosen": e["c"] == picked, "edge_limited": edge, "budget": int(budget),
                                 "seed": int(seed), "n_val": len(y["val"]), "still_improving": None} for e in path]
            classic_rows[-1].pop("_c_path", None)
    write_npz(paths.probe_heads, **heads)
    probe = write_method_outputs(paths, "probe", probe_rows, probe_preds, y_test=y["test"], summary_columns=names)
    classic = write_method_outputs(paths, "classic", classic_rows, classic_preds, y_test=y["test"],
                                   summary_columns=names)
    shift_frame = pd.DataFrame(shift_rows)
    for method in ("probe", "classic"):
        write_csv(paths.results / "shift" / f"{method}.csv", shift_frame[shift_frame["method"] == method])
        write_csv(paths.results / "hparams" / f"{method}.csv",
                  pd.DataFrame([h for h in hparams if h["method"] == method]))
    return {"probe": probe, "classic": classic}


def _shift_row(task: str, method: str, seed: int, budget: int, s: Any, metrics: dict[str, Any],
               names: tuple[str, ...]) -> dict[str, Any]:
    return {"task": task, "method": method, "seed": seed, "budget": budget, "set": s.name, "shift": s.shift,
            "severity": s.severity, "rows": len(s.y), **{k: v for k, v in metrics.items() if k in names}}


def _classic_run(data: Any, index: np.ndarray, y: dict[str, np.ndarray], *, seed: int, budget: int, task: str,
                 main_metric: str, c_grid: tuple[float, ...], extensions: int, val_x: Any, names: tuple[str, ...],
                 preds: dict[str, np.ndarray], sets: list[Any], shift_rows: list[dict[str, Any]]) -> dict[str, Any]:
    train_x = [data.splits["train"].x[i] for i in index] if data.kind == "text" else data.splits["train"].x[index]
    with measure("cpu") as cost:
        x_train, (x_val, x_test, *x_shift), n_features = classic_features(
            train_x, [val_x, data.splits["test"].x, *[s.x for s in sets]], kind=data.kind)
        model, info = fit_classic(x_train, y["train"][index], x_val, y["val"], c_grid=c_grid,
                                  main_metric=main_metric, seed=seed, grid_extensions=extensions,
                                  n_outputs=y["train"].shape[1] if y["train"].ndim == 2 else len(data.label_names))
    start = time.perf_counter()
    probs = np.asarray(model.predict_proba(x_test), np.float64)
    infer_seconds = time.perf_counter() - start
    thresholds = None if info["thresholds"] is None else np.asarray(info["thresholds"])
    metrics = compute_metrics(probs, y["test"], thresholds=thresholds)
    preds[run_key(seed, budget)] = probs
    if thresholds is not None:
        preds[f"thr_{run_key(seed, budget)}"] = thresholds
    for s, xs in zip(sets, x_shift):
        shift_metrics = compute_metrics(np.asarray(model.predict_proba(xs), np.float64), s.y, thresholds=thresholds)
        shift_rows.append(_shift_row(task, "classic", seed, budget, s, shift_metrics, names))
    n_out = y["train"].shape[1] if y["train"].ndim == 2 else probs.shape[1]
    return {"task": task, "method": "classic", "seed": seed, "budget": budget,
            **{k: v for k, v in metrics.items() if k in names}, "c": info["c"], "val_score": info["val_score"],
            "c_edge_limited": info["edge_limited"], "n_val": len(y["val"]), "_c_path": info["c_path"],
            "features": "tfidf-1-2gram" if data.kind == "text" else "raw-pixels", "n_features": n_features,
            "train_seconds": cost.seconds, "infer_seconds": infer_seconds,
            "infer_ms_per_1000": 1e6 * infer_seconds / len(y["test"]), "peak_mem_mib": cost.peak_mem_mib,
            "trainable_params": int(n_features * n_out + n_out), "total_params": int(n_features * n_out + n_out),
            "device": device_name("cpu")}
