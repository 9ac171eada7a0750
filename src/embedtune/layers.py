"""The layer probe (Head2Toe-style, Evci et al., ICML 2022): a linear head on pooled features from every block
of the frozen backbone, with a group lasso over blocks that selects the useful ones.

Features (`layer_features`): one forward pass of the frozen encoder with a hook on every block (text: each
transformer layer; images: each EfficientNet block, or ViT layer) records its output, pooled per row (text:
mean over the row's tokens, the probe's pooling; images: global average over positions), plus the final
embedding the probe reads as the last group where it differs from the last block's (images; text under cls
pooling). Shapes: (N, D) float32 with ``groups`` (D,) naming each column's
block. Each column is standardised on the training rows, and each block scaled by 1/√d_block, so blocks of
different widths compete on equal terms.

Head (`fit_layer_probe`): multinomial (single-label) or one-vs-rest sigmoid (multi-label) logistic regression
minimising mean cross-entropy + λ Σ_blocks √d_block ‖W_block‖_F (a group lasso: a block is used or dropped
whole) + a fixed ridge (``RIDGE``) for a unique solution; proximal gradient with Nesterov momentum (FISTA),
along a λ path from the largest λ that drops every block down to λ_max × ``path_ratio``, warm-started, and
stopped once the selection score fell twice in a row past its best. λ is chosen on the selection rows by the
task's main metric (ties → the larger λ: fewer blocks), like the probe's C;
multi-label thresholds chosen on the same rows. Only the budget's rows are fitted; test is scored once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

RIDGE = 1e-4  # fixed L2 on every weight (standardised features): a unique solution at the smallest λ


def _blocks(encoder: Any) -> Sequence[torch.nn.Module]:
    from .partial import _image_blocks, _text_layers

    return _text_layers(encoder) if encoder.kind == "text" else _image_blocks(encoder)


def layer_features(encoder: Any, items: Any, *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D) float32, groups (D,) int): every block's pooled output, then the final embedding
    (module docstring). Items are processed in order, in batches of `batch_size`."""
    blocks = list(_blocks(encoder))
    captured: list[torch.Tensor] = []

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    # text under mean pooling: the last layer's pooled output is the final embedding already
    include_final = not (encoder.kind == "text" and getattr(encoder, "pooling", "mean") == "mean")
    handles = [b.register_forward_hook(hook) for b in blocks]
    was_training = encoder.training
    encoder.eval()
    rows, n = [], len(items)
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                chunk = items[start:start + batch_size]
                batch = encoder.prepare(list(chunk) if isinstance(items, list) else np.asarray(chunk))
                captured.clear()
                final = encoder(**batch)  # (B, D_final)
                pooled = [_pool(h, batch.get("attention_mask")) for h in captured]
                if include_final:
                    pooled.append(final.float())
                rows.append(torch.cat(pooled, dim=1).numpy())
    finally:
        for h in handles:
            h.remove()
        encoder.train(was_training)
    widths = [p.shape[1] for p in pooled] if n else []
    groups = np.concatenate([np.full(w, g) for g, w in enumerate(widths)]).astype(np.int64) if widths else \
        np.zeros(0, np.int64)
    return (np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)), groups


def _pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, D) from a block output: (B, T, D) tokens (mean over the row's tokens) or (B, C, h, w) maps."""
    hidden = hidden.float()
    if hidden.ndim == 4:
        return hidden.mean(dim=(2, 3))
    if attention_mask is not None and attention_mask.shape[1] == hidden.shape[1]:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return hidden.mean(1)


@dataclass
class LayerProbe:
    """A fitted layer probe: standardisation, per-block scale, weights (D, K) and bias (K,)."""

    mean: np.ndarray
    scale: np.ndarray  # per column: 1 / (sd × √d_block)
    groups: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    multi_label: bool
    info: dict[str, Any] = field(default_factory=dict)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float32) - self.mean) * self.scale

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        logits = self.transform(x) @ self.weight + self.bias
        if self.multi_label:
            return 1.0 / (1.0 + np.exp(-logits))
        logits = logits - logits.max(1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(1, keepdims=True)

    def block_mass(self) -> np.ndarray:
        """Each block's share of the squared weight norm (on standardised features): where the head reads."""
        mass = np.array([np.sum(self.weight[self.groups == g] ** 2) for g in range(int(self.groups.max()) + 1)])
        return mass / mass.sum() if mass.sum() > 0 else mass


def _targets(y: np.ndarray, k: int, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return torch.as_tensor(np.asarray(y, np.float32))
    return torch.nn.functional.one_hot(torch.as_tensor(np.asarray(y, np.int64)), k).float()


def _loss_grad(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
               multi_label: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the mean cross-entropy (+ ridge on w) at (w, b)."""
    logits = x @ w + b  # (n, K)
    p = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)
    r = (p - t) / x.shape[0]
    return x.T @ r + RIDGE * w, r.sum(0)


def _group_prox(w: torch.Tensor, groups: torch.Tensor, sizes: torch.Tensor, threshold: float) -> torch.Tensor:
    """Block soft-thresholding: each block's rows shrink by threshold × √d_block in Frobenius norm."""
    norms = torch.zeros(len(sizes), dtype=w.dtype).index_add_(0, groups, (w ** 2).sum(1)).sqrt()
    factor = torch.clamp(1 - threshold * sizes.sqrt() / norms.clamp(min=1e-12), min=0.0)
    return w * factor[groups].unsqueeze(1)


def _fista(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor, b: torch.Tensor, *, lam: float, step: float,
           groups: torch.Tensor, sizes: torch.Tensor, multi_label: bool, iters: int,
           tol: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor, int]:
    zw, zb, momentum = w.clone(), b.clone(), 1.0
    for i in range(iters):
        gw, gb = _loss_grad(x, t, zw, zb, multi_label)
        w_new = _group_prox(zw - step * gw, groups, sizes, step * lam)
        b_new = zb - step * gb
        m_new = (1 + math.sqrt(1 + 4 * momentum ** 2)) / 2
        zw = w_new + (momentum - 1) / m_new * (w_new - w)
        zb = b_new + (momentum - 1) / m_new * (b_new - b)
        change = float((w_new - w).abs().max())
        w, b, momentum = w_new, b_new, m_new
        if change < tol * max(float(w.abs().max()), 1e-3):  # relative: weights grow as λ falls
            return w, b, i + 1
    return w, b, iters


def fit_layer_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
                    groups: np.ndarray, main_metric: str, n_outputs: int, n_lambdas: int = 8,
                    path_ratio: float = 1e-3, max_iter: int = 300) -> LayerProbe:
    """Fit along the λ path and keep the λ with the best selection-row score (module docstring).
    ``info``: the chosen λ, its selection score, the path (λ, score, blocks used), thresholds, FLOPs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices, many steps: one thread is ~50× faster than two busy ones here
    try:
        return _fit_path(x_train, y_train, x_val, y_val, groups=groups, main_metric=main_metric,
                         n_outputs=n_outputs, n_lambdas=n_lambdas, path_ratio=path_ratio, max_iter=max_iter)
    finally:
        torch.set_num_threads(threads)


def _fit_path(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
              groups: np.ndarray, main_metric: str, n_outputs: int, n_lambdas: int, path_ratio: float,
              max_iter: int) -> LayerProbe:
    from .metrics import selection_score

    multi_label = np.asarray(y_train).ndim == 2
    mean = x_train.mean(0)
    sd = x_train.std(0)
    sd[sd == 0] = 1.0
    sizes_np = np.bincount(groups)
    scale = (1.0 / (sd * np.sqrt(sizes_np[groups]))).astype(np.float32)
    xt = torch.as_tensor((x_train - mean) * scale, dtype=torch.float32)
    xv = (np.asarray(x_val, np.float32) - mean) * scale
    t = _targets(y_train, n_outputs, multi_label)
    g, sizes = torch.as_tensor(groups), torch.as_tensor(sizes_np, dtype=torch.float32)
    # step 1/L, L = the largest eigenvalue of XᵀX / n (power iteration) + ridge; softmax/sigmoid curvature ≤ 1
    v = torch.ones(xt.shape[1]) / math.sqrt(xt.shape[1])
    for _ in range(30):
        v = xt.T @ (xt @ v)
        v = v / v.norm().clamp(min=1e-12)
    lipschitz = float((xt @ v).norm() ** 2 / xt.shape[0]) + RIDGE
    step = 1.0 / max(lipschitz, 1e-8)
    w = torch.zeros(xt.shape[1], n_outputs)
    prior = t.mean(0).clamp(1e-4, 1 - 1e-4)
    b = torch.log(prior / (1 - prior)) if multi_label else torch.log(prior)
    gw, _ = _loss_grad(xt, t, w, b, multi_label)
    block_norms = torch.zeros(len(sizes)).index_add_(0, g, (gw ** 2).sum(1)).sqrt() / sizes.sqrt()
    lam_max = float(block_norms.max())
    lambdas = lam_max * np.geomspace(1.0, path_ratio, n_lambdas)
    path, best, iterations = [], None, 0
    for lam in lambdas:
        w, b, used = _fista(xt, t, w, b, lam=float(lam), step=step, groups=g, sizes=sizes,
                            multi_label=multi_label, iters=max_iter)
        iterations += used
        wn, bn = w.numpy(), b.numpy()
        logits = xv @ wn + bn
        probs = 1 / (1 + np.exp(-logits)) if multi_label else np.exp(logits - logits.max(1, keepdims=True))
        if not multi_label:
            probs = probs / probs.sum(1, keepdims=True)
        score, thresholds = selection_score(probs, y_val, main_metric)
        active = int(sum(np.any(wn[groups == k] != 0) for k in range(len(sizes_np))))
        path.append({"lambda": float(lam), "val_score": float(score), "blocks_used": active})
        if best is None or score > best["score"]:  # strictly better: ties keep the larger λ
            best = {"score": float(score), "lam": float(lam), "w": wn.copy(), "b": bn.copy(), "thr": thresholds}
        elif len(path) >= 3 and path[-1]["val_score"] < path[-2]["val_score"] < best["score"]:
            break  # two falls in a row past the best: smaller λ only overfits (the path is ordered)
    n, d, k = xt.shape[0], xt.shape[1], n_outputs
    info = {"lambda": best["lam"], "val_score": best["score"], "path": path, "thresholds": best["thr"],
            "edge_limited": best["lam"] in (float(lambdas[0]), float(lambdas[-1])),
            "flops": float(iterations * 2 * 2 * n * d * k)}  # each iteration: X·W and Xᵀ·R
    return LayerProbe(mean=mean.astype(np.float32), scale=scale, groups=groups, weight=best["w"],
                      bias=best["b"], multi_label=multi_label, info=info)


# ----------------------------------------------------------------------------------- the stage's runs


def ensure_layer_features(encoder: Any, splits: dict[str, Any], path: Any, *, batch_size: int) -> dict[str, Any]:
    """Every split's block features in ``path`` (npz: ``<split>`` float16, ``groups``), built in one pass per
    split; returns what the embed stage records: seconds, rows, seconds per row, width, blocks and bytes."""
    import time

    from .io import write_npz

    start, arrays, groups = time.perf_counter(), {}, None
    for name, split in splits.items():
        feats, groups = layer_features(encoder, split.x, batch_size=batch_size)
        arrays[name] = feats.astype(np.float16)  # storage: half the bytes; the head reads float32
    seconds = time.perf_counter() - start
    write_npz(path, groups=groups, **arrays)
    rows = sum(len(a) for a in arrays.values())
    return {"seconds": seconds, "rows": rows, "seconds_per_row": seconds / max(rows, 1),
            "dim": int(len(groups)), "blocks": int(groups.max()) + 1, "bytes": int(path.stat().st_size)}


def load_layer_features(path: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; the embed stage writes it: dvc repro embed")
    with np.load(path) as npz:
        return {k: npz[k].astype(np.float32) for k in npz.files if k != "groups"}, npz["groups"]
