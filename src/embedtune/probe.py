"""Linear probes on frozen embeddings, and the classic non-neural floor.

Probe protocol (one run = one label budget × seed, from the shared nested subsets):
1. Standardise features with the mean and std of the budget's train rows (inside the probe).
2. For every C in the params grid (small to large C, each fit warm-started from the previous one), fit
   L2-regularised logistic regression on the budget's rows: softmax for single-label, one-vs-rest
   sigmoids for multi-label. The objective is scikit-learn's, ``C·Σ loss + ½‖W‖²``, minimised to a
   largest gradient entry below 1e-5 by damped Newton steps (L-BFGS when a problem is large) in the row
   space of the standardised budget features — exact, by the representer theorem (`fit_probe`).
3. Pick C by the task's main metric on the selection rows (the validation rows every method shares,
   `tuning.selection_index`; ties → smaller C, i.e. stronger regularisation). A pick at an edge of the
   grid adds one ×10 step beyond that edge (warm-started), at most ``grid_extensions`` times; a pick still
   at an edge is flagged ``edge_limited``. For multi-label, the per-label thresholds are chosen on the
   same rows.
4. Keep the path's solution at the chosen C: the objective is strictly convex, so it is that C's optimum
   (to the tolerance) whether reached warm or from zeros. No validation label ever enters a fit (that
   would exceed the label budget). Score the test split once.
Fit time covers the whole sweep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .gridsearch import grid_search, nearest
from .metrics import selection_score


@dataclass
class LinearModel:
    """A linear classifier on standardised features: logits = ((x - mean) / std) @ W.T + b."""

    weight: np.ndarray  # (K, D)
    bias: np.ndarray  # (K,)
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    multi_label: bool

    def logits(self, x: np.ndarray) -> np.ndarray:
        weight, bias = self.raw_head()  # folds the standardisation into the head: no (N, D) temporary
        return np.asarray(x, np.float64) @ weight.T + bias

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _proba(self.logits(x).astype(np.float64), self.multi_label)

    def raw_head(self) -> tuple[np.ndarray, np.ndarray]:
        """(W', b') acting on raw (unstandardised) features: W' = W/σ, b' = b − W'·μ. Used by LP-FT."""
        w = self.weight / self.std[None, :]
        return w, self.bias - w @ self.mean


class LogregFit(NamedTuple):
    weight: np.ndarray  # (K, D)
    bias: np.ndarray  # (K,)
    evals: int  # objective + gradient evaluations
    flops: int  # multiply-adds × 2 of the fit, counted by the solver


# Newton's method while one problem's Hessian stays small; L-BFGS beyond (large full-data fits)
NEWTON_MAX_UNKNOWNS = 1024


def fit_logreg(x: np.ndarray, y: np.ndarray, *, c: float, multi_label: bool, n_outputs: int,
               init: tuple[np.ndarray, np.ndarray] | None = None, max_iter: int = 300,
               tol: float = 1e-5, lbfgs_tol: float = 1e-4) -> LogregFit:
    """Minimise ``(C·Σ loss + ½‖W‖²) / (C·n)``, the objective of scikit-learn's ``LogisticRegression``
    (softmax for single-label, one sigmoid per label for multi-label; biases unpenalised).

    x: (n, D) standardised; y: (n,) class ids or (n, K) 0/1. Stops when the largest gradient entry is below
    `tol` (Newton; scikit-learn's default is 1e-4) or `lbfgs_tol` (L-BFGS: scikit-learn's own 1e-4, at which
    a warm-started path already ends at an objective no higher than scikit-learn's cold fit, and 1e-5 costs
    about twice the evaluations on the 97-class benchmark), or after `max_iter` iterations. Solver: damped
    Newton while one problem has at most NEWTON_MAX_UNKNOWNS unknowns (a handful of quadratically converging
    steps from a warm start), else L-BFGS.
    Two classes are solved as one sigmoid on the logit difference: with both rows penalised the optimum
    is W = (−w/2, w/2), and the problem in w is binary logistic regression at 2C, exactly.
    """
    x = np.ascontiguousarray(x, np.float64)
    d = x.shape[1]
    if multi_label:
        if d + 1 <= NEWTON_MAX_UNKNOWNS:
            return _newton_sigmoid(x, np.asarray(y, np.float64), c=c, init=init, max_iter=max_iter, tol=tol)
    elif n_outputs == 2 and d + 1 <= NEWTON_MAX_UNKNOWNS:
        start = None if init is None else (init[0][1:] - init[0][:1], init[1][1:] - init[1][:1])
        fit = _newton_sigmoid(x, (np.asarray(y) == 1).astype(np.float64)[:, None], c=2.0 * c, init=start,
                              max_iter=max_iter, tol=tol)
        half_w, half_b = fit.weight[0] / 2, fit.bias[0] / 2
        return LogregFit(np.stack([-half_w, half_w]), np.array([-half_b, half_b]), fit.evals, fit.flops)
    elif n_outputs * (d + 1) <= NEWTON_MAX_UNKNOWNS:
        return _newton_softmax(x, np.asarray(y, np.int64), c=c, n_outputs=n_outputs, init=init, max_iter=max_iter,
                               tol=tol)
    return _lbfgs(x, y, c=c, multi_label=multi_label, n_outputs=n_outputs, init=init, max_iter=max_iter,
                  tol=lbfgs_tol)


def uses_lbfgs(d: int, k: int, multi_label: bool) -> bool:
    """Whether `fit_logreg` solves a problem of `d` features and `k` outputs with L-BFGS (else Newton)."""
    if multi_label or k == 2:
        return d + 1 > NEWTON_MAX_UNKNOWNS
    return k * (d + 1) > NEWTON_MAX_UNKNOWNS


def _augment(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))])  # (n, D+1): the last column carries the bias


def _theta(init: tuple[np.ndarray, np.ndarray] | None, k: int, d: int) -> np.ndarray:
    if init is None:
        return np.zeros((k, d + 1))
    return np.hstack([np.asarray(init[0], np.float64).reshape(k, d), np.asarray(init[1], np.float64).reshape(k, 1)])


def _newton_sigmoid(x: np.ndarray, y: np.ndarray, *, c: float, init: tuple[np.ndarray, np.ndarray] | None,
                    max_iter: int, tol: float) -> LogregFit:
    """L independent binary problems (the columns of y, (n, L)) that share x and C, stepped together: each
    iteration takes a Newton step per unconverged label with its own backtracking (Armijo) step size."""
    n, d = x.shape
    labels = y.shape[1]
    xa = _augment(x)
    penalty = np.r_[np.full(d, 1.0 / c), 0.0]  # (D+1,) on the Hessian's diagonal; bias unpenalised
    theta = _theta(init, labels, d)  # (L, D+1)

    def value_grad(th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = xa @ th.T  # (n, L)
        f = ((np.logaddexp(0.0, z) - y * z).sum(0) + 0.5 * (th[:, :d] ** 2).sum(1) / c) / n  # (L,)
        p = 1.0 / (1.0 + np.exp(-z))
        return f, ((p - y).T @ xa + th * penalty) / n, p

    f, g, p = value_grad(theta)
    evals, flops = 1, 4 * n * (d + 1) * labels
    for _ in range(max_iter):
        active = np.flatnonzero(np.abs(g).max(1) >= tol)
        if active.size == 0:
            break
        steps = np.empty((active.size, d + 1))
        for row, j in enumerate(active):
            curvature = p[:, j] * (1.0 - p[:, j])  # (n,)
            hessian = (xa * curvature[:, None]).T @ xa / n + np.diag(penalty / n) + 1e-12 * np.eye(d + 1)
            steps[row] = np.linalg.solve(hessian, g[j])
        flops += active.size * (2 * n * (d + 1) ** 2 + (d + 1) ** 3)
        theta, f, g, p, n_evals = _backtrack(value_grad, theta, f, g, p, active, steps)
        evals += n_evals
        flops += n_evals * 4 * n * (d + 1) * labels
    return LogregFit(theta[:, :d].copy(), theta[:, d].copy(), evals, int(flops))


def _newton_softmax(x: np.ndarray, y: np.ndarray, *, c: float, n_outputs: int,
                    init: tuple[np.ndarray, np.ndarray] | None, max_iter: int, tol: float) -> LogregFit:
    """Damped Newton on the multinomial problem; the full (K(D+1))² Hessian is built block by block."""
    n, d = x.shape
    k = n_outputs
    xa = _augment(x)
    onehot = np.eye(k)[y]  # (n, K)
    penalty = np.r_[np.full(d, 1.0 / c), 0.0]
    theta = _theta(init, k, d)[None]  # (1, K, D+1): one problem, shaped for _backtrack

    def value_grad(th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = xa @ th[0].T  # (n, K)
        z = z - z.max(1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(1))
        f = ((log_norm - (z * onehot).sum(1)).sum() + 0.5 * (th[0, :, :d] ** 2).sum() / c) / n
        p = np.exp(z - log_norm[:, None])
        return np.array([f]), (((p - onehot).T @ xa + th[0] * penalty) / n)[None], p

    f, g, p = value_grad(theta)
    size = k * (d + 1)
    evals, flops = 1, 4 * n * (d + 1) * k
    for _ in range(max_iter):
        if np.abs(g).max() < tol:
            break
        hessian = np.empty((size, size))
        for a in range(k):
            for b in range(a, k):
                weight = p[:, a] * ((a == b) - p[:, b])  # (n,)
                block = (xa * weight[:, None]).T @ xa / n
                hessian[a * (d + 1):(a + 1) * (d + 1), b * (d + 1):(b + 1) * (d + 1)] = block
                hessian[b * (d + 1):(b + 1) * (d + 1), a * (d + 1):(a + 1) * (d + 1)] = block.T
        # the bias shift (same constant on every class) changes nothing: a tiny ridge keeps H invertible
        hessian += np.diag(np.tile(penalty / n, k)) + 1e-10 * np.eye(size)
        step = np.linalg.solve(hessian, g[0].ravel()).reshape(1, k, d + 1)
        flops += k * (k + 1) * n * (d + 1) ** 2 + size ** 3
        theta, f, g, p, n_evals = _backtrack(value_grad, theta, f, g, p, np.array([0]), step)
        evals += n_evals
        flops += n_evals * 4 * n * (d + 1) * k
    return LogregFit(theta[0, :, :d].copy(), theta[0, :, d].copy(), evals, int(flops))


def _backtrack(value_grad: Any, theta: np.ndarray, f: np.ndarray, g: np.ndarray, p: np.ndarray,
               active: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Armijo backtracking along −steps for the `active` problems (rows of theta), each with its own step size;
    halving stops after 40 tries (a step of 1e-12 changes nothing)."""
    t = np.ones(active.size)
    slope = (g[active] * steps).reshape(active.size, -1).sum(1)
    n_evals = 0
    while True:
        n_evals += 1
        trial = theta.copy()
        trial[active] -= t.reshape((-1,) + (1,) * (theta.ndim - 1)) * steps
        f_new, g_new, p_new = value_grad(trial)
        accepted = f_new[active] <= f[active] - 1e-4 * t * slope
        if accepted.all() or n_evals == 40:
            break
        t = np.where(accepted, t, t / 2)
    return trial, f_new, g_new, p_new, n_evals


def _objective(params: np.ndarray, x: np.ndarray, y: np.ndarray, *, c: float,
               multi_label: bool) -> tuple[float, np.ndarray]:
    """The objective and its gradient for L-BFGS, analytic. params: flat [W (K, D) row-major, b (K,)]."""
    n, d = x.shape
    k = params.size // (d + 1)
    weight, bias = params[:k * d].reshape(k, d), params[k * d:]
    logits = x @ weight.T + bias  # (n, K)
    if multi_label:
        # log(1 + e^z) − y·z, computed stably
        loss = float(np.sum(np.logaddexp(0.0, logits) - y * logits))
        residual = 1.0 / (1.0 + np.exp(-logits)) - y  # (n, K)
    else:
        shifted = logits - logits.max(1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(1))
        loss = float(np.sum(log_norm - shifted[np.arange(n), y]))
        residual = np.exp(shifted - log_norm[:, None])  # softmax (n, K)
        residual[np.arange(n), y] -= 1.0
    value = (loss + 0.5 * float(np.sum(weight * weight)) / c) / n
    grad_w = (residual.T @ x + weight / c) / n  # (K, D)
    grad_b = residual.sum(0) / n  # (K,)
    return value, np.concatenate([grad_w.ravel(), grad_b])


def _lbfgs(x: np.ndarray, y: np.ndarray, *, c: float, multi_label: bool, n_outputs: int,
           init: tuple[np.ndarray, np.ndarray] | None, max_iter: int, tol: float) -> LogregFit:
    from scipy.optimize import minimize

    y = np.asarray(y, np.float64 if multi_label else np.int64)
    n, d = x.shape
    start = _theta(init, n_outputs, d)
    start = np.concatenate([start[:, :d].ravel(), start[:, d]])
    result = minimize(lambda flat: _objective(flat, x, y, c=c, multi_label=multi_label), start, jac=True,
                      method="L-BFGS-B", options={"maxiter": max_iter, "gtol": tol, "ftol": 64 * np.finfo(float).eps,
                                                  "maxcor": 10, "maxls": 50})
    weight = result.x[:n_outputs * d].reshape(n_outputs, d)
    return LogregFit(weight, result.x[n_outputs * d:].copy(), int(result.nfev),
                     int(result.nfev) * 4 * n * (d + 1) * n_outputs)


def _standardise_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    std = x.std(0)
    return mean, np.where(std > 1e-6, std, 1.0)


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
              c_grid: tuple[float, ...], main_metric: str, n_outputs: int,
              max_iter: int = 300, grid_extensions: int = 0) -> tuple[LinearModel, dict[str, Any]]:
    """Select C on validation along a warm-started path and keep that C's solution (see module doc)."""
    multi_label = y_train.ndim == 2
    mean, std = _standardise_stats(x_train)
    start = time.perf_counter()
    xt = np.asarray((x_train - mean) / std, np.float64)  # (n, D)
    # Representer theorem: with an L2 penalty the optimal W lies in the row space of xt, so fitting on the
    # coordinates xt·Q (Q: (D, n) orthonormal columns spanning that space, n < D) and mapping back W = W_r·Qᵀ
    # is the same problem, exactly, with n instead of D unknowns per class (16 instead of 1280 at a budget
    # of 16 image embeddings).
    basis = np.linalg.qr(xt.T, mode="reduced")[0] if len(xt) < xt.shape[1] else None  # (D, n) or None
    to_fit = (lambda a: a) if basis is None else (lambda a: a @ basis)  # noqa: E731
    xt_r = to_fit(xt)  # (n, r)
    xv_r = to_fit(np.asarray((x_val - mean) / std, np.float64))  # (n_val, r)
    path: list[tuple[float, float, tuple[np.ndarray, np.ndarray], np.ndarray]] = []
    evals, flops = 0, 0 if basis is None else 4 * len(xt) ** 2 * xt.shape[1]  # QR and projection

    # single-label: the softmax is fitted over the classes the budget holds (an absent class's unpenalised
    # bias would run to −∞ and stall the solver); absent classes get probability ~0 in their own column
    present = np.arange(n_outputs) if multi_label else np.unique(y_train)
    y_fit = y_train if multi_label else np.searchsorted(present, y_train)

    def fit_at(c: float, init: tuple[np.ndarray, np.ndarray] | None) -> None:
        nonlocal evals, flops
        w, b, n_eval, n_flops = fit_logreg(xt_r, y_fit, c=c, multi_label=multi_label, n_outputs=len(present),
                                           init=init, max_iter=max_iter)
        evals, flops = evals + n_eval, flops + n_flops
        w, b = _all_columns(w, b, present, n_outputs)
        val_probs = _proba(xv_r @ w.T + b, multi_label)
        score, _ = selection_score(val_probs, y_val, main_metric)
        path.append((score, c, (w, b), val_probs))

    solutions: dict[float, tuple[np.ndarray, np.ndarray]] = {}  # C → (w, b) over all columns

    def evaluate(c: float) -> float:
        warm = nearest(solutions, c)  # warm start from the nearest C tried (the previous one on the grid)
        fit_at(c, None if warm is None else _present_rows(warm, present))
        solutions[c] = path[-1][2]
        return path[-1][0]

    found = grid_search(evaluate, c_grid, step=10.0, extensions=grid_extensions)
    best_c, best_score = found["chosen"], dict(found["path"])[found["chosen"]]
    _, _, (best_w, best_b), best_probs = next(entry for entry in path if entry[1] == best_c)
    if uses_lbfgs(xt_r.shape[1], len(present), multi_label):
        # the path stops L-BFGS at scikit-learn's tolerance; the kept fit is polished to the Newton paths' 1e-5
        # from there (a few evaluations), so it ends at least as converged as a cold scikit-learn fit
        w, b, n_eval, n_flops = fit_logreg(xt_r, y_fit, c=best_c, multi_label=multi_label, n_outputs=len(present),
                                           init=_present_rows((best_w, best_b), present), max_iter=max_iter,
                                           lbfgs_tol=1e-5)
        evals, flops = evals + n_eval, flops + n_flops
        best_w, best_b = _all_columns(w, b, present, n_outputs)
        best_probs = _proba(xv_r @ best_w.T + best_b, multi_label)
    edge_limited = found["edge_limited"]
    _, thresholds = selection_score(best_probs, y_val, main_metric)
    fit_seconds = time.perf_counter() - start
    model = LinearModel(weight=best_w if basis is None else best_w @ basis.T, bias=best_b, mean=mean, std=std,
                        multi_label=multi_label)
    info = {"c": best_c, "val_score": best_score, "fit_seconds": fit_seconds, "function_evals": evals,
            "flops": int(flops), "thresholds": None if thresholds is None else thresholds.tolist(),
            "c_path": sorted(({"c": c, "val_score": score} for score, c, _, _ in path), key=lambda e: e["c"]),
            "edge_limited": edge_limited}
    return model, info


# an absent class's logit sits this far below the lowest present bias: probability ~e^-30 (finite, so an
# LP-FT head can start from it)
ABSENT_LOGIT_GAP = 30.0


def _all_columns(w: np.ndarray, b: np.ndarray, present: np.ndarray, n_outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the fitted classes placed at their label ids among `n_outputs` (absent rows: W 0, bias low)."""
    if len(present) == n_outputs:
        return w, b
    weight = np.zeros((n_outputs, w.shape[1]))
    bias = np.full(n_outputs, float(b.min()) - ABSENT_LOGIT_GAP)
    weight[present], bias[present] = w, b
    return weight, bias


def _present_rows(head: tuple[np.ndarray, np.ndarray], present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, b = head
    return (w, b) if len(present) == len(b) else (w[present], b[present])


def _proba(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    from scipy.special import expit, softmax

    return expit(logits) if multi_label else softmax(logits, axis=1)


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


class LabelAligned:
    """A fitted scikit-learn classifier whose ``predict_proba`` has one column per task label (label id
    order), whatever classes its training rows held: scikit-learn's columns follow ``classes_`` (the labels
    present in the budget); an absent label's column is 0."""

    def __init__(self, model: Any, n_outputs: int, multi_label: bool) -> None:
        self.model, self.n_outputs, self.multi_label = model, n_outputs, multi_label

    def predict_proba(self, x: Any) -> np.ndarray:
        probs = np.asarray(self.model.predict_proba(x), np.float64)
        if self.multi_label:
            return probs  # one-vs-rest on a multi-hot matrix keeps every label's column
        out = np.zeros((probs.shape[0], self.n_outputs))
        out[:, np.asarray(self.model.classes_, np.int64)] = probs
        return out


def fit_classic(x_train: Any, y_train: np.ndarray, x_val: Any, y_val: np.ndarray, *, c_grid: tuple[float, ...],
                main_metric: str, seed: int, grid_extensions: int = 0,
                n_outputs: int | None = None) -> tuple[LabelAligned, dict[str, Any]]:
    """scikit-learn logistic regression (one-vs-rest for multi-label), C chosen on validation. The returned
    model's probabilities have `n_outputs` columns (default: the largest label id seen + 1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    multi_label = y_train.ndim == 2
    start = time.perf_counter()
    tried: dict[float, tuple[float, Any, Any]] = {}

    if n_outputs is None:
        n_outputs = y_train.shape[1] if multi_label else int(max(y_train.max(), np.max(y_val))) + 1

    def fit_at(c: float) -> None:
        base = LogisticRegression(C=c, max_iter=1000, random_state=seed)
        fitted = OneVsRestClassifier(base) if multi_label else base  # a label absent from the budget → constant 0
        fitted.fit(x_train, y_train)
        model = LabelAligned(fitted, n_outputs, multi_label)
        score, thresholds = selection_score(model.predict_proba(x_val), y_val, main_metric)
        tried[c] = (score, model, thresholds)

    def evaluate(c: float) -> float:
        fit_at(c)
        return tried[c][0]

    found = grid_search(evaluate, c_grid, step=10.0, extensions=grid_extensions)
    cs, best_c = sorted(tried), found["chosen"]  # ties → stronger regularisation
    score, model, thresholds = tried[best_c]
    info = {"c": best_c, "val_score": score, "fit_seconds": time.perf_counter() - start,
            "thresholds": None if thresholds is None else thresholds.tolist(),
            "c_path": [{"c": c, "val_score": tried[c][0]} for c in cs],
            "edge_limited": found["edge_limited"]}
    return model, info
