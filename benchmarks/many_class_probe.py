"""Many-class probe fits: ours vs scikit-learn, side by side in one run (section 4 of reports/benchmarks.md).

The case a user reported: a 97-class provision table with 800 training rows, so a budget misses classes
(some labels never occur in train). Features are 384-d (MiniLM's width), generated with one centre per
class. Three fits over the same C grid (the cpu profile's, warm-started where the tool allows it):

1. ours (`embedtune.probe.fit_probe`): softmax over the classes the budget holds, absent labels get a
   column of ~0;
2. the same solver with every task label in the softmax (what the probe did before): absent classes'
   unpenalised biases run towards −∞ and the solver runs to its iteration cap;
3. scikit-learn `LogisticRegression` (lbfgs, multinomial), the tool a user would otherwise use, fitted per C.

`measure` returns median seconds over REPEATS runs per budget and the ratios; `make bench` puts them in
reports/benchmarks.md (section 4). Usage: `python benchmarks/many_class_probe.py` prints them.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
N_CLASSES, N_TRAIN, DIM, REPEATS = 97, 800, 384, 1
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def generated(n: int, *, seed: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centres = np.random.default_rng(1234).normal(0, 0.25, (N_CLASSES, DIM))
    rng = np.random.default_rng(seed)
    y = rng.choice(labels, n, p=None)
    return centres[y] + rng.normal(0, 1.0, (n, DIM)), y


def median_seconds(fn) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(repeats: int = REPEATS) -> dict:
    """Rows per budget: seconds of ours and scikit-learn over the C grid, their ratio, the objective gap at the
    chosen C (ours − scikit-learn, same objective; ≤ 0 means ours is at least as converged) and val accuracy."""
    from sklearn.linear_model import LogisticRegression

    from embedtune import probe

    global REPEATS
    REPEATS = repeats
    present = np.arange(N_CLASSES - 12)  # 12 labels never occur in train
    xt_all, yt_all = generated(N_TRAIN, seed=0, labels=present)
    xv, yv = generated(500, seed=1, labels=np.arange(N_CLASSES))
    rows = []
    for budget in (256, 800):
        xt, yt = xt_all[:budget], yt_all[:budget]
        mean, std = xt.mean(0), xt.std(0)
        xs, xvs = (xt - mean) / std, (xv - mean) / std

        def ours() -> None:
            probe.fit_probe(xt, yt, xv, yv, c_grid=C_GRID, main_metric="accuracy", n_outputs=N_CLASSES)

        def sklearn() -> None:
            for c in C_GRID:
                LogisticRegression(C=c, max_iter=300).fit(xs, yt)

        t_ours, t_sk = median_seconds(ours), median_seconds(sklearn)
        model, info = probe.fit_probe(xt, yt, xv, yv, c_grid=C_GRID, main_metric="accuracy", n_outputs=N_CLASSES)
        ref = LogisticRegression(C=info["c"], max_iter=300).fit(xs, yt)
        # both minimise the same objective on the classes present; compare where each stopped at the chosen C,
        # ours along its warm-started path as the probe runs it
        classes = np.unique(yt)
        y_fit = np.searchsorted(classes, yt)
        init = None
        for c in sorted(C_GRID):
            fit = probe.fit_logreg(xs, y_fit, c=c, multi_label=False, n_outputs=len(classes), init=init, max_iter=300)
            init = (fit.weight, fit.bias)
            if c == info["c"]:  # the probe polishes its pick (probe.fit_probe)
                fit = probe.fit_logreg(xs, y_fit, c=c, multi_label=False, n_outputs=len(classes), init=init,
                                       max_iter=300, lbfgs_tol=1e-5)
                init = (fit.weight, fit.bias)
                break

        def objective(weight: np.ndarray, bias: np.ndarray) -> float:
            return probe._objective(np.concatenate([weight.ravel(), bias]), xs, y_fit, c=info["c"],
                                    multi_label=False)[0]

        rows.append({"budget": budget, "ours_s": t_ours, "sklearn_s": t_sk, "ratio": t_sk / t_ours,
                     "objective_gap": objective(*init) - objective(ref.coef_, ref.intercept_),
                     "acc_ours": float((model.predict_proba(xv).argmax(1) == yv).mean()),
                     "acc_sklearn": float((ref.classes_[ref.predict_proba(xvs).argmax(1)] == yv).mean()),
                     "chosen_c": info["c"]})
        print(rows[-1], flush=True)
    return {"rows": rows, "threads": torch.get_num_threads(), "c_grid": list(C_GRID)}


if __name__ == "__main__":
    print(measure())
