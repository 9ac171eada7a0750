"""Stage `probe`: the linear probe on cached embeddings, the layer probe and the classic floor (TF-IDF / raw
pixels + logistic regression) at every budget × seed of one task, selected on the shared selection rows;
every run also scores every shift set. It writes data only: the page (figures and notebook 01) is the
`probe_page` stage, so editing the page never refits a probe."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..backbones import encode, load_backbone
from ..costs import device_name, measure, price
from ..data import TaskData, load_prepared, selection_index
from ..embeddings import load_embeddings
from ..io import read_json, seed_everything, write_csv, write_npz
from ..layers import layer_features, layer_probe_runs, load_layer_features
from ..metrics import compute_metrics
from ..outputs import shift_row, write_method_outputs
from ..params import Params, is_multi_label, task_kind
from ..paths import TaskPaths, load_subsets, run_key
from ..probe import classic_features, fit_classic, fit_probe
from ..registry import TUNED_METHODS, metric_names
from ..shift import ShiftSet, read_shift_sets


def run(params: Params, task: str, *, root: Path = Path("."), device: str = "cpu") -> dict[str, Any]:
    """Write ``results/<task>/{probe,classic}.csv``, their predictions, shift rows and C searches,
    ``data/probe_heads/<task>/<method>.npz`` (lp_ft: the raw-feature heads it starts from; others: empty) and
    ``metrics/<task>/methods/{probe,classic,layer_probe}.json``. Returns the result rows."""
    seed_everything(0)
    paths = TaskPaths(root, task)
    data = load_prepared(paths.prepared)
    subsets = load_subsets(paths)
    emb = load_embeddings(paths.embeddings, expect_checksum=data.source["checksum"])
    embed_meta = read_json(paths.embeddings / "meta.json")
    task_params = params.task(task)
    names = metric_names(is_multi_label(task_params) or data.multi_label)
    sel = selection_index(data, params.scale.data.max_val)
    y = {s: data.splits[s].y for s in ("train", "val", "test")}
    y["val"] = y["val"][sel]
    emb_val = emb["val"][sel]
    val_x = data.splits["val"].take(sel).x
    sets = read_shift_sets(paths.shift)
    shift_emb, shift_layers = _embed_shift_sets(params, task, sets, device=device)
    layer_feats, layer_groups = load_layer_features(paths.layer_features)
    n_outputs = y["train"].shape[1] if y["train"].ndim == 2 else len(data.label_names)
    probe_cfg = params.scale.probe
    ft = params.scale.finetune
    cost_meta = embed_meta.get("cost") or {}
    if "seconds_per_row" not in cost_meta or "backbone_params" not in cost_meta:
        raise ValueError(f"{paths.embeddings / 'meta.json'} has no measured cost; re-run the embed stage "
                         f"(dvc repro embed@{task}), which measures it")
    seconds_per_row, backbone_params = float(cost_meta["seconds_per_row"]), int(cost_meta["backbone_params"])
    if "flops_per_row" not in embed_meta:  # the probe's FLOPs include the backbone pass: never drop it silently
        raise ValueError(f"{paths.embeddings / 'meta.json'} has no flops_per_row; re-run the embed stage "
                         f"(dvc repro embed@{task}), which measures it")
    embed_flops_per_row = float(embed_meta["flops_per_row"])
    probe_rows, classic_rows, probe_preds, classic_preds, heads, shift_rows, hparams = [], [], {}, {}, {}, [], []
    pilots = {(str(ft.search_seed), str(subsets["n_train"] if b == "all" else b)) for b in ft.search_budgets}
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
            key = run_key(seed, budget)
            heads[f"w_{key}"], heads[f"b_{key}"] = model.raw_head()
            probe_preds[key] = probs
            probe_preds[f"val_{key}"] = model.predict_proba(emb_val)  # the selection rows (decision.py)
            if thresholds is not None:
                probe_preds[f"thr_{key}"] = thresholds
            trainable = int(model.weight.size + model.bias.size)
            # serving a prediction = embedding it (the backbone's forward) + the linear head
            serve_seconds = infer_seconds + seconds_per_row * len(y["test"])
            embedded_rows = len(index) + len(y["val"])
            probe_rows.append({
                "task": task, "method": "probe", "seed": int(seed), "budget": int(budget),
                **{k: v for k, v in metrics.items() if k in names}, "c": info["c"], "val_score": info["val_score"],
                "c_edge_limited": info["edge_limited"], "n_val": len(y["val"]),
                "train_seconds": cost.seconds,
                "embed_seconds": seconds_per_row * embedded_rows,
                "infer_seconds": infer_seconds, "infer_ms_per_1000": 1e6 * serve_seconds / len(y["test"]),
                "peak_mem_mib": cost.peak_mem_mib, "trainable_params": trainable,
                "total_params": trainable + backbone_params,
                # building = embedding the rows it needs + fitting; serving = backbone forward + head, per row
                "train_flops": info["flops"] + embed_flops_per_row * embedded_rows,
                "infer_flops_per_row": embed_flops_per_row + 2 * trainable,
                "device": device_name(device), "cost": price(cost.seconds, ft.price_per_device_hour),
            })
            for s in sets:
                shift_metrics = compute_metrics(model.predict_proba(shift_emb[s.name]), s.y, thresholds=thresholds)
                shift_rows.append(shift_row(task=task, method="probe", seed=int(seed), budget=int(budget),
                                            shift_set=s, metrics=shift_metrics, names=names))
            row, c_path = _classic_run(data, index, y, seed=int(seed), budget=int(budget), task=task,
                                       main_metric=task_params.main_metric, c_grid=probe_cfg.c_grid,
                                       extensions=probe_cfg.grid_extensions, val_x=val_x, names=names,
                                       preds=classic_preds, sets=sets, shift_rows=shift_rows)
            classic_rows.append(row)
            if (seed, budget) in pilots:
                for method, path, picked, edge in (("probe", info["c_path"], info["c"], info["edge_limited"]),
                                                   ("classic", c_path, row["c"], row["c_edge_limited"])):
                    hparams += [{"method": method, "hyperparameter": "C", "value": e["c"], "val_score": e["val_score"],
                                 "chosen": e["c"] == picked, "edge_limited": edge, "budget": int(budget),
                                 "seed": int(seed), "n_val": len(y["val"]), "still_improving": None} for e in path]
    layered = layer_probe_runs(task=task, feats=layer_feats, groups=layer_groups, y=y, sel=sel, subsets=subsets,
                               shift_feats=shift_layers, sets=sets, main_metric=task_params.main_metric,
                               names=names, n_outputs=n_outputs, cost_meta=_layer_cost(embed_meta, paths, task),
                               flops_per_row=embed_flops_per_row, pilots=pilots, device=device)
    shift_rows += layered["shift_rows"]
    hparams += layered["hparams"]
    write_csv(paths.results / "layer_mass.csv", pd.DataFrame(layered["mass"]))
    # one file per tuned method: only lp_ft's changes when the probe does; it carries the digest of what decides
    # its heads (lp_ft's run key holds that, not the heads, whose numbers differ a little between hosts)
    inputs = np.asarray(probe_inputs_digest(params))
    for method in TUNED_METHODS:
        write_npz(paths.probe_input(method), **({**heads, "inputs": inputs} if method == "lp_ft" else {}))
    frames = {"probe": write_method_outputs(paths, "probe", probe_rows, probe_preds, y_test=y["test"], y_val=y["val"],
                                            summary_columns=names),
              "classic": write_method_outputs(paths, "classic", classic_rows, classic_preds, y_test=y["test"], y_val=y["val"],
                                              summary_columns=names),
              "layer_probe": write_method_outputs(paths, "layer_probe", layered["rows"], layered["preds"],
                                                  y_test=y["test"], y_val=y["val"], summary_columns=names)}
    shift_frame = pd.DataFrame(shift_rows)
    for method in ("probe", "classic", "layer_probe"):
        write_csv(paths.results / "shift" / f"{method}.csv", shift_frame[shift_frame["method"] == method])
        write_csv(paths.hparams(method), pd.DataFrame([h for h in hparams if h["method"] == method]))
    return {"results": pd.concat(frames.values(), ignore_index=True)}


PROBE_SOURCES = ("probe.py", "embeddings.py", "gridsearch.py")  # the code that decides a probe head


def probe_inputs_digest(params: Params) -> str:
    """What decides lp_ft's starting heads besides the subset, data and weights (which its run key holds
    already): the probe and embedding configs and the probe code. Host-independent, unlike the fitted heads,
    which two hosts' arithmetic (embeddings, solver stopping) makes differ in more than their last bits."""
    import hashlib
    import json
    from dataclasses import asdict

    digest = hashlib.md5(json.dumps({"probe": asdict(params.scale.probe), "embed": asdict(params.scale.embed)},
                                    sort_keys=True).encode())
    package = Path(__file__).resolve().parents[1]
    for name in PROBE_SOURCES:
        digest.update(name.encode())
        digest.update((package / name).read_bytes())
    return digest.hexdigest()


def _embed_shift_sets(params: Params, task: str, sets: list[ShiftSet], *,
                      device: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Frozen-backbone embeddings of every shift set (same encoder and settings as the embed stage), and
    every block's features for the layer probe."""
    embed = params.scale.embed
    encoder = load_backbone(params.backbone_for(task), kind=task_kind(params.task(task)), pooling=embed.pooling,
                            max_length=embed.max_length, image_size=embed.image_size)
    emb = {s.name: encode(encoder, s.x, batch_size=embed.batch_size, device=device, progress=False) for s in sets}
    return emb, {s.name: layer_features(encoder, s.x, batch_size=embed.batch_size)[0] for s in sets}


def _layer_cost(embed_meta: dict[str, Any], paths: TaskPaths, task: str) -> dict[str, Any]:
    """The layer features' measured extraction cost (embed stage) and the backbone's size."""
    if "layers" not in embed_meta:
        raise ValueError(f"{paths.embeddings / 'meta.json'} has no layer-feature cost; re-run the embed stage "
                         f"(dvc repro embed@{task}), which extracts them")
    return {**embed_meta["layers"], "backbone_params": embed_meta["cost"]["backbone_params"]}


def _classic_run(data: TaskData, index: np.ndarray, y: dict[str, np.ndarray], *, seed: int, budget: int, task: str,
                 main_metric: str, c_grid: tuple[float, ...], extensions: int, val_x: Any, names: tuple[str, ...],
                 preds: dict[str, np.ndarray], sets: list[ShiftSet],
                 shift_rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """One classic run: its row (and its C path); predictions and shift rows are appended in place."""
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
    preds[f"val_{run_key(seed, budget)}"] = np.asarray(model.predict_proba(x_val), np.float64)
    if thresholds is not None:
        preds[f"thr_{run_key(seed, budget)}"] = thresholds
    for s, xs in zip(sets, x_shift):
        shift_metrics = compute_metrics(np.asarray(model.predict_proba(xs), np.float64), s.y, thresholds=thresholds)
        shift_rows.append(shift_row(task=task, method="classic", seed=seed, budget=budget, shift_set=s,
                                    metrics=shift_metrics, names=names))
    n_out = y["train"].shape[1] if y["train"].ndim == 2 else probs.shape[1]
    row = {"task": task, "method": "classic", "seed": seed, "budget": budget,
           **{k: v for k, v in metrics.items() if k in names}, "c": info["c"], "val_score": info["val_score"],
           "c_edge_limited": info["edge_limited"], "n_val": len(y["val"]),
           "features": "tfidf-1-2gram" if data.kind == "text" else "raw-pixels", "n_features": n_features,
           "train_seconds": cost.seconds, "infer_seconds": infer_seconds,
           "infer_ms_per_1000": 1e6 * infer_seconds / len(y["test"]), "peak_mem_mib": cost.peak_mem_mib,
           "trainable_params": int(n_features * n_out + n_out), "total_params": int(n_features * n_out + n_out),
           "device": device_name("cpu")}
    return row, info["c_path"]


if __name__ == "__main__":
    from ..entry import stage_main

    sys.exit(stage_main(run, doc=__doc__))
