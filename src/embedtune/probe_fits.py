"""The probe stage's fits, one (seed, budget) at a time, and their records in the run store.

One record per (seed, budget) holds the three methods the probe stage fits on the same rows — the linear probe
on the cached embeddings, the layer probe on every block's features, the classic floor — under
``runs/<task>/probe_fits/s<seed>_b<budget>_<key12>.{json,npz}``: each method's result row, C (λ) path and
shift rows in the JSON; test and selection-row probabilities (float32), thresholds, and the probe's
raw-feature head (lp_ft starts from it) in the npz. Keyed like a tuned run (`fit_key`): the data checksum,
the subset and selection rows, the task's settings, the probe and embedding configs, the backbone and its
weights hash, the shift sets' content and the source of the code that fits (`FIT_SOURCES`); never the
host. So a fresh clone, another host or an edit to a page re-renders from the records and fits nothing;
``EMBEDTUNE_STORE`` (``use`` | ``cold`` | ``require``) means what it means for tuned runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .costs import device_name, measure, price
from .io import read_json, seed_everything, write_json, write_npz
from .layers import fit_layer_probe
from .metrics import compute_metrics
from .outputs import shift_row
from .probe import classic_features, fit_classic, fit_probe

# the code whose bytes decide a fit's numbers (their digest enters the key)
FIT_SOURCES = ("probe_fits.py", "probe.py", "gridsearch.py", "layers.py", "metrics.py", "outputs.py")
ARRAY_DTYPE = np.float32  # probabilities as stored and as every later stage reads them: cold = warm


@dataclass
class FitInputs:
    """What every fit of one task shares. `features` loads the embeddings, the block features and the shift
    sets' encodings on first use only: a stage whose fits are all stored never runs the backbone."""

    task: str
    data: Any  # TaskData
    y: dict[str, np.ndarray]  # train, val (selection rows only), test
    sel: np.ndarray
    sets: list[Any]
    main_metric: str
    names: tuple[str, ...]
    n_outputs: int
    probe_cfg: Any
    price_per_hour: float
    seconds_per_row: float
    backbone_params: int
    embed_flops_per_row: float
    layer_cost: dict[str, Any]
    load_features: Any  # () -> dict with emb, emb_val, shift_emb, layer_feats, layer_groups, shift_layers
    device: str = "cpu"
    _features: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def features(self) -> dict[str, Any]:
        if self._features is None:
            self._features = self.load_features()
        return self._features


def source_digest(names: tuple[str, ...] = FIT_SOURCES) -> str:
    here = Path(__file__).parent
    digest = hashlib.md5()
    for name in names:
        digest.update(name.encode())
        digest.update((here / name).read_bytes())
    for path in sorted((here / "metric_modules").rglob("*.py")):  # the shipped metrics metrics.py loads
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fit_key(*, index: np.ndarray, shared: dict[str, Any]) -> str:
    """One fit's key: the subset's rows plus what every fit of the task shares (`shared`, `stage` builds it)."""
    rows = hashlib.md5(np.ascontiguousarray(np.asarray(index, np.int64)).tobytes()).hexdigest()
    return hashlib.md5(json.dumps({"subset": rows, **shared}, sort_keys=True, default=str).encode()).hexdigest()


def shared_key_parts(*, data_checksum: str, sel: np.ndarray, task_settings: Any, probe_cfg: Any, embed_cfg: Any,
                     backbone: str, weights_md5: str, shift_digest: str) -> dict[str, Any]:
    return {"data": data_checksum, "selection": hashlib.md5(np.asarray(sel, np.int64).tobytes()).hexdigest(),
            "task": asdict(task_settings), "probe": asdict(probe_cfg), "embed": asdict(embed_cfg),
            "backbone": backbone, "weights": weights_md5, "shift": shift_digest, "code": source_digest()}


def record_path(root: Path, task: str, *, seed: int, budget: int, key: str) -> Path:
    return Path(root) / "runs" / task / "probe_fits" / f"s{seed}_b{budget}_{key[:12]}.json"


def read_record(path: Path, key: str) -> dict[str, Any] | None:
    """The record at `path` when its key matches (None otherwise), arrays included."""
    if not path.is_file():
        return None
    record = read_json(path)
    if record.get("key") != key:
        return None
    with np.load(path.with_suffix(".npz")) as npz:
        record["arrays"] = {k: npz[k] for k in npz.files}
    return record


def write_record(path: Path, record: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The npz, then the JSON (a record exists iff its JSON does); returns what a later read gives back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(path.with_suffix(".npz"), **{k: np.asarray(v, ARRAY_DTYPE) if np.asarray(v).dtype.kind == "f" else v
                                            for k, v in arrays.items()})
    write_json(path, record)
    return read_record(path, record["key"])


def fit_one(inputs: FitInputs, *, seed: int, budget: int, index: np.ndarray) -> tuple[dict[str, Any], dict]:
    """The three fits of one (seed, budget) (probe, layer probe, classic): the record's JSON part (rows, paths,
    shift rows, block mass) and its arrays."""
    f, y, index = inputs.features, inputs.y, np.asarray(index)
    arrays: dict[str, np.ndarray] = {}
    rows, paths, shift_rows = {}, {}, []
    seed_everything(seed)
    with measure(inputs.device) as cost:
        model, info = fit_probe(f["emb"]["train"][index], y["train"][index], f["emb_val"], y["val"],
                                c_grid=inputs.probe_cfg.c_grid, main_metric=inputs.main_metric,
                                n_outputs=inputs.n_outputs, max_iter=inputs.probe_cfg.max_iter,
                                grid_extensions=inputs.probe_cfg.grid_extensions)
    start = time.perf_counter()
    probs = model.predict_proba(f["emb"]["test"])
    infer_seconds = time.perf_counter() - start
    thresholds = None if info["thresholds"] is None else np.asarray(info["thresholds"])
    arrays["probe"], arrays["val_probe"] = probs, model.predict_proba(f["emb_val"])
    arrays["w_probe"], arrays["b_probe"] = model.raw_head()
    if thresholds is not None:
        arrays["thr_probe"] = thresholds
    trainable = int(model.weight.size + model.bias.size)
    embedded_rows = len(index) + len(y["val"])
    serve_seconds = infer_seconds + inputs.seconds_per_row * len(y["test"])  # backbone forward + head, per row
    rows["probe"] = {
        "task": inputs.task, "method": "probe", "seed": seed, "budget": budget,
        **_named(compute_metrics(probs, y["test"], thresholds=thresholds), inputs.names), "c": info["c"],
        "val_score": info["val_score"], "c_edge_limited": info["edge_limited"], "n_val": len(y["val"]),
        "train_seconds": cost.seconds, "embed_seconds": inputs.seconds_per_row * embedded_rows,
        "infer_seconds": infer_seconds, "infer_ms_per_1000": 1e6 * serve_seconds / len(y["test"]),
        "peak_mem_mib": cost.peak_mem_mib, "trainable_params": trainable,
        "total_params": trainable + inputs.backbone_params,
        # building = embedding the rows it needs + fitting; serving = backbone forward + head, per row
        "train_flops": info["flops"] + inputs.embed_flops_per_row * embedded_rows,
        "infer_flops_per_row": inputs.embed_flops_per_row + 2 * trainable,
        "device": device_name(inputs.device), "cost": price(cost.seconds, inputs.price_per_hour)}
    paths["probe"] = [{"value": e["c"], "val_score": e["val_score"]} for e in info["c_path"]]
    for s in inputs.sets:
        shifted = compute_metrics(model.predict_proba(f["shift_emb"][s.name]), s.y, thresholds=thresholds)
        shift_rows.append(shift_row(task=inputs.task, method="probe", seed=seed, budget=budget, shift_set=s,
                                    metrics=shifted, names=inputs.names))
    layered, mass = _layer_fit(inputs, seed=seed, budget=budget, index=index, arrays=arrays, shift_rows=shift_rows)
    rows["layer_probe"], paths["layer_probe"] = layered
    rows["classic"], paths["classic"] = _classic_fit(inputs, seed=seed, budget=budget, index=index, arrays=arrays,
                                                     shift_rows=shift_rows)
    return {"rows": rows, "paths": paths, "shift_rows": shift_rows, "mass": mass}, arrays


def _named(metrics: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k in names}


def _layer_fit(inputs: FitInputs, *, seed: int, budget: int, index: np.ndarray, arrays: dict[str, np.ndarray],
               shift_rows: list[dict[str, Any]]) -> tuple[tuple[dict[str, Any], list[dict]], list[dict]]:
    """The layer probe (layers.py) on the budget's rows: its row and λ path, its block mass; arrays and shift
    rows are added in place. Build cost = extracting the block features of the budget's and selection rows
    (measured per row by the embed stage) + fitting; serving = the backbone pass + the head."""
    f, y = inputs.features, inputs.y
    val = f["layer_feats"]["val"][inputs.sel]
    seed_everything(seed)
    with measure(inputs.device) as cost:
        model = fit_layer_probe(f["layer_feats"]["train"][index], y["train"][index], val, y["val"],
                                groups=f["layer_groups"], main_metric=inputs.main_metric, n_outputs=inputs.n_outputs)
    start = time.perf_counter()
    probs = model.predict_proba(f["layer_feats"]["test"])
    head_seconds = time.perf_counter() - start
    info = model.info
    thresholds = None if info["thresholds"] is None else np.asarray(info["thresholds"])
    arrays["layer_probe"], arrays["val_layer_probe"] = probs, model.predict_proba(val)
    if thresholds is not None:
        arrays["thr_layer_probe"] = thresholds
    block_mass = model.block_mass()
    per_row, embedded = float(inputs.layer_cost["seconds_per_row"]), len(index) + len(y["val"])
    trainable = int(model.weight.size + model.bias.size)
    row = {"task": inputs.task, "method": "layer_probe", "seed": seed, "budget": budget,
           **_named(compute_metrics(probs, y["test"], thresholds=thresholds), inputs.names),
           "lambda": info["lambda"], "val_score": info["val_score"], "lambda_edge_limited": info["edge_limited"],
           "n_val": len(y["val"]), "blocks_used": int((block_mass > 0).sum()), "blocks": len(block_mass),
           "train_seconds": cost.seconds + per_row * embedded, "embed_seconds": per_row * embedded,
           "infer_seconds": head_seconds,
           "infer_ms_per_1000": 1e6 * (head_seconds + per_row * len(y["test"])) / len(y["test"]),
           "peak_mem_mib": cost.peak_mem_mib, "trainable_params": trainable,
           "total_params": trainable + inputs.backbone_params,
           "train_flops": info["flops"] + inputs.embed_flops_per_row * embedded,
           "infer_flops_per_row": inputs.embed_flops_per_row + 2 * trainable, "device": device_name(inputs.device)}
    for s in inputs.sets:
        shifted = compute_metrics(model.predict_proba(f["shift_layers"][s.name]), s.y, thresholds=thresholds)
        shift_rows.append(shift_row(task=inputs.task, method="layer_probe", seed=seed, budget=budget, shift_set=s,
                                    metrics=shifted, names=inputs.names))
    mass = [{"task": inputs.task, "seed": seed, "budget": budget, "block": b, "mass": float(m)}
            for b, m in enumerate(block_mass)]
    path = [{"value": p["lambda"], "val_score": p["val_score"]} for p in info["path"]]
    return (row, path), mass


def _classic_fit(inputs: FitInputs, *, seed: int, budget: int, index: np.ndarray, arrays: dict[str, np.ndarray],
                 shift_rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict]]:
    """The classic floor (TF-IDF or raw pixels + logistic regression): its row and C path; arrays and shift
    rows are added in place."""
    data, y = inputs.data, inputs.y
    train_x = [data.splits["train"].x[i] for i in index] if data.kind == "text" else data.splits["train"].x[index]
    val_x = data.splits["val"].take(inputs.sel).x
    with measure("cpu") as cost:
        x_train, (x_val, x_test, *x_shift), n_features = classic_features(
            train_x, [val_x, data.splits["test"].x, *[s.x for s in inputs.sets]], kind=data.kind)
        model, info = fit_classic(x_train, y["train"][index], x_val, y["val"], c_grid=inputs.probe_cfg.c_grid,
                                  main_metric=inputs.main_metric, seed=seed,
                                  grid_extensions=inputs.probe_cfg.grid_extensions, n_outputs=inputs.n_outputs)
    start = time.perf_counter()
    probs = np.asarray(model.predict_proba(x_test), np.float64)
    infer_seconds = time.perf_counter() - start
    thresholds = None if info["thresholds"] is None else np.asarray(info["thresholds"])
    arrays["classic"], arrays["val_classic"] = probs, np.asarray(model.predict_proba(x_val), np.float64)
    if thresholds is not None:
        arrays["thr_classic"] = thresholds
    for s, xs in zip(inputs.sets, x_shift):
        shifted = compute_metrics(np.asarray(model.predict_proba(xs), np.float64), s.y, thresholds=thresholds)
        shift_rows.append(shift_row(task=inputs.task, method="classic", seed=seed, budget=budget, shift_set=s,
                                    metrics=shifted, names=inputs.names))
    n_out = y["train"].shape[1] if y["train"].ndim == 2 else probs.shape[1]
    row = {"task": inputs.task, "method": "classic", "seed": seed, "budget": budget,
           **_named(compute_metrics(probs, y["test"], thresholds=thresholds), inputs.names), "c": info["c"],
           "val_score": info["val_score"], "c_edge_limited": info["edge_limited"], "n_val": len(y["val"]),
           "features": "tfidf-1-2gram" if data.kind == "text" else "raw-pixels", "n_features": n_features,
           "train_seconds": cost.seconds, "infer_seconds": infer_seconds,
           "infer_ms_per_1000": 1e6 * infer_seconds / len(y["test"]), "peak_mem_mib": cost.peak_mem_mib,
           "trainable_params": int(n_features * n_out + n_out), "total_params": int(n_features * n_out + n_out),
           "device": device_name("cpu")}
    return row, [{"value": e["c"], "val_score": e["val_score"]} for e in info["c_path"]]
