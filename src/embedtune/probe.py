"""Linear probes on frozen embeddings, and the classic non-neural floor.

Probe protocol (one run = one label budget × seed, from the shared nested subsets):
1. Standardise features with the mean and std of the budget's train rows (inside the probe).
2. For every C in the params grid (small to large C, each fit warm-started from the previous one), fit L2-regularised logistic regression on the budget's rows: softmax for single-label,
   one-vs-rest sigmoids for multi-label. The objective is sklearn's: ``C·Σ loss + ½‖W‖²``.
3. Pick C by the task's main metric on the validation split (ties → smaller C, i.e. stronger
   regularisation). For multi-label, the per-label thresholds are chosen on validation too.
4. Refit at the chosen C from zeros on the budget's rows alone (adding validation labels would exceed
   the label budget) and score the test split once.
Fit time covers the whole sweep and the refit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import choose_thresholds, compute_metrics, metric_value


@dataclass
class LinearModel:
    """A linear classifier on standardised features: logits = ((x - mean) / std) @ W.T + b."""

    weight: np.ndarray  # (K, D)
    bias: np.ndarray  # (K,)
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    multi_label: bool

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std) @ self.weight.T + self.bias

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(self.logits(x).astype(np.float64))
        return (torch.sigmoid(z) if self.multi_label else torch.softmax(z, dim=1)).numpy()

    def raw_head(self) -> tuple[np.ndarray, np.ndarray]:
        """(W', b') acting on raw (unstandardised) features: W' = W/σ, b' = b − W'·μ. Used by LP-FT."""
        w = self.weight / self.std[None, :]
        return w, self.bias - w @ self.mean


def fit_logreg(x: torch.Tensor, y: torch.Tensor, *, c: float, multi_label: bool, n_outputs: int,
               init: tuple[torch.Tensor, torch.Tensor] | None = None,
               max_iter: int = 300) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Full-batch L-BFGS on ``C·Σ loss + ½‖W‖²`` (scaled by 1/(C·n)); returns (W, b, function evals).

    x: (n, D) standardised float64; y: (n,) class ids or (n, K) 0/1 floats.
    """
    n, d = x.shape
    weight = torch.zeros(n_outputs, d, dtype=x.dtype) if init is None else init[0].clone()
    bias = torch.zeros(n_outputs, dtype=x.dtype) if init is None else init[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
                                  tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")
    evals = [0]

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = x @ weight.T + bias
        if multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, y, reduction="sum")
        else:
            loss = F.cross_entropy(logits, y, reduction="sum")
        objective = (loss + 0.5 * (weight * weight).sum() / c) / n
        objective.backward()
        evals[0] += 1
        return objective

    optimizer.step(closure)
    return weight.detach(), bias.detach(), evals[0]


def _standardise_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    std = x.std(0)
    return mean, np.where(std > 1e-6, std, 1.0)


def _selection_score(probs: np.ndarray, y: np.ndarray, main_metric: str) -> tuple[float, np.ndarray | None]:
    thresholds = choose_thresholds(probs, y) if y.ndim == 2 else None
    score = metric_value(compute_metrics(probs, y, thresholds=thresholds), main_metric)
    return (-np.inf if np.isnan(score) else score), thresholds


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
              c_grid: tuple[float, ...], main_metric: str, n_outputs: int,
              max_iter: int = 300) -> tuple[LinearModel, dict[str, Any]]:
    """Select C on validation along a warm-started path, then refit at the chosen C (see module doc)."""
    multi_label = y_train.ndim == 2
    mean, std = _standardise_stats(x_train)
    xt = torch.from_numpy((x_train - mean) / std).double()
    yt = torch.from_numpy(y_train).double() if multi_label else torch.from_numpy(y_train).long()
    xv = torch.from_numpy((x_val - mean) / std).double()
    start = time.perf_counter()
    path, init, evals = [], None, 0
    for c in sorted(c_grid):
        w, b, n_eval = fit_logreg(xt, yt, c=c, multi_label=multi_label, n_outputs=n_outputs, init=init,
                                  max_iter=max_iter)
        init, evals = (w, b), evals + n_eval
        z = xv @ w.T + b
        probs = (torch.sigmoid(z) if multi_label else torch.softmax(z, 1)).numpy()
        score, _ = _selection_score(probs, y_val, main_metric)
        path.append((score, c))
    best_score = max(s for s, _ in path)
    best_c = min(c for s, c in path if s == best_score)  # ties → stronger regularisation
    w, b, n_eval = fit_logreg(xt, yt, c=best_c, multi_label=multi_label, n_outputs=n_outputs, max_iter=max_iter)
    evals += n_eval
    fit_seconds = time.perf_counter() - start
    model = LinearModel(weight=w.numpy(), bias=b.numpy(), mean=mean, std=std, multi_label=multi_label)
    _, thresholds = _selection_score(model.predict_proba(x_val), y_val, main_metric)
    info = {"c": best_c, "val_score": best_score, "fit_seconds": fit_seconds, "function_evals": evals,
            "thresholds": None if thresholds is None else thresholds.tolist(),
            "c_path": [{"c": c, "val_score": s} for s, c in path]}
    return model, info


def probe_flops(n: int, d: int, k: int, function_evals: int) -> int:
    """FLOPs of the probe's fit: each loss+gradient evaluation costs about 3 matmuls of (n×d)·(d×k)."""
    return int(function_evals * 3 * 2 * n * d * k)


# ------------------------------------------------------------------------------------ classic floor


def classic_features(train: Any, others: list[Any], *, kind: str) -> tuple[Any, list[Any], int]:
    """TF-IDF (word 1-2 grams) for text, raw scaled pixels for images; fitted on the budget's rows only."""
    if kind == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=50000)
        x_train = vectorizer.fit_transform(train)
        return x_train, [vectorizer.transform(o) for o in others], x_train.shape[1]
    flat = [np.asarray(a, np.float32).reshape(len(a), -1) / 255.0 for a in [train, *others]]
    return flat[0], flat[1:], flat[0].shape[1]


def fit_classic(x_train: Any, y_train: np.ndarray, x_val: Any, y_val: np.ndarray, *, c_grid: tuple[float, ...],
                main_metric: str, seed: int) -> tuple[Any, dict[str, Any]]:
    """scikit-learn logistic regression (one-vs-rest for multi-label), C chosen on validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    multi_label = y_train.ndim == 2
    start = time.perf_counter()
    best = (-np.inf, None, None, None)
    for c in sorted(c_grid):
        base = LogisticRegression(C=c, max_iter=1000, random_state=seed)
        model = OneVsRestClassifier(base) if multi_label else base  # a label absent from the budget → constant 0
        model.fit(x_train, y_train)
        probs = _classic_proba(model, x_val, multi_label)
        score, thresholds = _selection_score(probs, y_val, main_metric)
        if score > best[0]:
            best = (score, c, model, thresholds)
    info = {"c": best[1], "val_score": best[0], "fit_seconds": time.perf_counter() - start,
            "thresholds": None if best[3] is None else best[3].tolist()}
    return best[2], info


def _classic_proba(model: Any, x: Any, multi_label: bool) -> np.ndarray:
    probs = model.predict_proba(x)
    return np.asarray(probs, np.float64)
