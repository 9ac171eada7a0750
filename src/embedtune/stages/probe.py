"""Stage `probe`: the linear probe on cached embeddings, the layer probe and the classic floor (TF-IDF / raw
pixels + logistic regression) at every budget × seed of one task, selected on the shared selection rows;
every run also scores every shift set. It writes data only: the page (figures and notebook 01) is the
`probe_page` stage, so editing the page never refits a probe."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..backbones import encode, load_backbone
from ..costs import device_name
from ..data import TaskData, load_prepared, selection_index
from ..embeddings import load_embeddings
from ..io import read_json, seed_everything, write_csv, write_json, write_npz
from ..layers import layer_features, load_layer_features
from ..outputs import aggregate, write_method_outputs
from ..params import Params, is_multi_label, task_kind
from ..paths import TaskPaths, load_subsets, run_key
from ..probe_fits import FitInputs, fit_key, fit_one, read_record, record_path, shared_key_parts, write_record
from ..registry import TUNED_METHODS, metric_names
from ..shift import ShiftSet, read_shift_sets
from ..store import MissingRunError, folder_digest, host_info, store_mode
from ..tables import distinct_fits


def run(params: Params, task: str, *, root: Path = Path("."), device: str = "cpu",
        progress: bool = True) -> dict[str, Any]:
    """Write ``results/<task>/{probe,layer_probe,classic}.csv``, their predictions, shift rows, C (λ) searches
    and block mass, ``data/probe_heads/<task>/<method>.npz`` (lp_ft: the raw-feature heads it starts from;
    others: empty) and ``metrics/<task>/methods/{probe,classic,layer_probe}.json``. Each (seed, budget) is read
    from the run store when it holds it (`probe_fits`), else fitted and recorded. Returns the result rows."""
    seed_everything(0)
    paths = TaskPaths(root, task)
    data = load_prepared(paths.prepared)
    subsets = load_subsets(paths)
    embed_meta = read_json(paths.embeddings / "meta.json")
    task_params = params.task(task)
    names = metric_names(is_multi_label(task_params) or data.multi_label)
    sel = selection_index(data, params.scale.data.max_val)
    y = {s: data.splits[s].y for s in ("train", "val", "test")}
    y["val"] = y["val"][sel]
    sets = read_shift_sets(paths.shift)
    cost_meta = embed_meta.get("cost") or {}
    if "seconds_per_row" not in cost_meta or "backbone_params" not in cost_meta:
        raise ValueError(f"{paths.embeddings / 'meta.json'} has no measured cost; re-run the embed stage "
                         f"(dvc repro embed@{task}), which measures it")
    if "flops_per_row" not in embed_meta:  # the probe's FLOPs include the backbone pass: never drop it silently
        raise ValueError(f"{paths.embeddings / 'meta.json'} has no flops_per_row; re-run the embed stage "
                         f"(dvc repro embed@{task}), which measures it")
    inputs = FitInputs(
        task=task, data=data, y=y, sel=sel, sets=sets, main_metric=task_params.main_metric, names=names,
        n_outputs=y["train"].shape[1] if y["train"].ndim == 2 else len(data.label_names),
        probe_cfg=params.scale.probe, price_per_hour=params.scale.finetune.price_per_device_hour,
        seconds_per_row=float(cost_meta["seconds_per_row"]), backbone_params=int(cost_meta["backbone_params"]),
        embed_flops_per_row=float(embed_meta["flops_per_row"]), layer_cost=_layer_cost(embed_meta, paths, task),
        load_features=lambda: _features(params, task, paths, data, sel, sets, device=device), device=device)
    shared = shared_key_parts(data_checksum=data.source["checksum"], sel=sel, task_settings=task_params,
                              probe_cfg=params.scale.probe, embed_cfg=params.scale.embed,
                              backbone=params.backbone_for(task), weights_md5=embed_meta["key"]["weights_md5"],
                              shift_digest=folder_digest(paths.shift))
    mode = store_mode()
    (Path(root) / "runs" / task / "probe_fits").mkdir(parents=True, exist_ok=True)  # a declared output
    todo = [(int(seed), int(budget), np.asarray(index)) for seed, by_size in subsets["subsets"].items()
            for budget, index in by_size.items()]
    records = []
    fitted: dict[str, dict[str, Any]] = {}  # key → the first seed's record: a fit is decided by its rows alone
    for seed, budget, index in tqdm(todo, desc=f"probe fits {task}", disable=not progress, unit="fit"):
        key = fit_key(index=index, shared=shared)
        if key in fitted:  # same rows as an earlier seed (every seed's "all" budget): one fit, not one per seed
            records.append(reseeded(fitted[key], seed))
            continue
        path = record_path(root, task, seed=seed, budget=budget, key=key)
        record = None if mode == "cold" else read_record(path, key)
        if record is None:
            if mode == "require":
                raise MissingRunError(f"{task}: probe fits s{seed} b{budget} missing from the run store "
                                      f"({path.name}) under EMBEDTUNE_STORE=require")
            part, arrays = fit_one(inputs, seed=seed, budget=budget, index=index)
            ran = host_info(device=device_name(device), precision="fp32")
            record = write_record(path, {"key": key, "seed": seed, "budget": budget, **part, "ran": ran}, arrays)
        fitted[key] = with_backbone_flops(record, float(embed_meta["flops_per_row"]))
        records.append(reseeded(fitted[key], seed))
    pilots = {(str(params.scale.finetune.search_seed), str(subsets["n_train"] if b == "all" else b))
              for b in params.scale.finetune.search_budgets}
    return _write_outputs(paths, records, y=y, names=names, pilots=pilots, inputs_digest=probe_inputs_digest(params))


def with_backbone_flops(record: dict[str, Any], backbone_flops_per_row: float) -> dict[str, Any]:
    """`record` with its probe and layer-probe FLOPs re-derived from the backbone's current per-row count (the
    embed stage's), as the tuned runs' FLOPs are derived when their stage assembles them: a fix to the count
    reaches a stored fit without refitting it. Both rows were recorded as serve = backbone + 2 × trainable
    per row and build = head fit + backbone × (budget + selection rows), so the recorded backbone count is
    recovered from the serve FLOPs and replaced."""
    rows = dict(record["rows"])
    for method in ("probe", "layer_probe"):
        if method not in rows or "infer_flops_per_row" not in rows[method]:
            continue
        row = rows[method]
        delta = backbone_flops_per_row - (float(row["infer_flops_per_row"]) - 2 * float(row["trainable_params"]))
        embedded = int(row["budget"]) + int(row["n_val"])
        rows[method] = {**row, "infer_flops_per_row": float(row["infer_flops_per_row"]) + delta,
                        "train_flops": float(row["train_flops"]) + delta * embedded}
    return {**record, "rows": rows}


def reseeded(record: dict[str, Any], seed: int) -> dict[str, Any]:
    """`record` as seed `seed`'s: the fits of a (seed, budget) depend only on its rows (the key: lbfgs and the
    feature order are deterministic, no random draw), so seeds that share the rows share one fit. Every row
    says whose fit it is (``fit_seed``): tables count distinct fits, and pairing with a tuned method's seeds
    still finds a probe row for each."""
    fit_seed = int(record["rows"]["probe"].get("fit_seed", record["seed"]))

    def mark(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "seed": seed, "fit_seed": fit_seed}

    return {**record, "seed": seed, "rows": {m: mark(r) for m, r in record["rows"].items()},
            "shift_rows": [mark(r) for r in record["shift_rows"]], "mass": [mark(r) for r in record["mass"]]}


def _write_outputs(paths: TaskPaths, records: list[dict[str, Any]], *, y: dict[str, np.ndarray],
                   names: tuple[str, ...], pilots: set[tuple[str, str]], inputs_digest: str) -> dict[str, Any]:
    """Every output of the stage, assembled from the records (stored or just fitted alike)."""
    frames, heads, shift_rows, hparams, mass = {}, {}, [], [], []
    for method, knob in (("probe", "c"), ("layer_probe", "lambda"), ("classic", "c")):
        rows, preds = [], {}
        for r in records:
            key, arrays = run_key(r["seed"], r["budget"]), r["arrays"]
            rows.append(r["rows"][method])
            preds[key], preds[f"val_{key}"] = arrays[method], arrays[f"val_{method}"]
            if f"thr_{method}" in arrays:
                preds[f"thr_{key}"] = arrays[f"thr_{method}"]
            if (str(r["seed"]), str(r["budget"])) in pilots:
                chosen, edge = r["rows"][method][knob], r["rows"][method][f"{knob}_edge_limited"]
                hparams += [{"method": method, "hyperparameter": "C" if knob == "c" else knob, "value": e["value"],
                             "val_score": e["val_score"], "chosen": e["value"] == chosen, "edge_limited": edge,
                             "budget": r["budget"], "seed": r["seed"], "n_val": len(y["val"]),
                             "still_improving": None} for e in r["paths"][method]]
        frames[method] = write_method_outputs(paths, method, rows, preds, y_test=y["test"], y_val=y["val"],
                                              summary_columns=names)
        # the metrics JSON again, over distinct fits (a fit shared by seeds counts once in its n and sd) and
        # without the bookkeeping column fit_seed
        fits = distinct_fits(frames[method])
        numeric = tuple(c for c in fits.columns if c not in ("seed", "budget", "fit_seed")
                        and pd.api.types.is_numeric_dtype(fits[c]) and not pd.api.types.is_bool_dtype(fits[c]))
        write_json(paths.metrics / "methods" / f"{method}.json", aggregate(fits, tuple(dict.fromkeys((*names, *numeric)))))
    for r in records:
        key = run_key(r["seed"], r["budget"])
        heads[f"w_{key}"], heads[f"b_{key}"] = r["arrays"]["w_probe"], r["arrays"]["b_probe"]
        shift_rows += r["shift_rows"]
        mass += r["mass"]
    write_csv(paths.results / "layer_mass.csv", pd.DataFrame(mass))
    # one file per tuned method: only lp_ft's changes when the probe does; it carries the digest of what decides
    # its heads (lp_ft's run key holds that, not the heads, whose numbers differ a little between hosts)
    for method in TUNED_METHODS:
        write_npz(paths.probe_input(method),
                  **({**heads, "inputs": np.asarray(inputs_digest)} if method == "lp_ft" else {}))
    shift_frame = pd.DataFrame(shift_rows)
    for method in ("probe", "classic", "layer_probe"):
        write_csv(paths.results / "shift" / f"{method}.csv", shift_frame[shift_frame["method"] == method])
        write_csv(paths.hparams(method), pd.DataFrame([h for h in hparams if h["method"] == method]))
    return {"results": pd.concat(frames.values(), ignore_index=True)}


def _features(params: Params, task: str, paths: TaskPaths, data: TaskData, sel: np.ndarray, sets: list[ShiftSet],
              *, device: str) -> dict[str, Any]:
    """What a fit reads, loaded once when the first fit missing from the store needs it."""
    emb = load_embeddings(paths.embeddings, expect_checksum=data.source["checksum"])
    shift_emb, shift_layers = _embed_shift_sets(params, task, sets, device=device)
    layer_feats, layer_groups = load_layer_features(paths.layer_features)
    return {"emb": emb, "emb_val": emb["val"][sel], "shift_emb": shift_emb, "layer_feats": layer_feats,
            "layer_groups": layer_groups, "shift_layers": shift_layers}


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


if __name__ == "__main__":
    from ..entry import stage_main

    sys.exit(stage_main(run, doc=__doc__))
