"""How long the layer probe's head takes to fit, beside what a user would otherwise run on the same features:
scikit-learn's L2 logistic regression (lbfgs) with the same number of regularisation values, side by side
in one run, printed as ratios. Also the features' storage per row.

    python benchmarks/layer_probe_bench.py --task sentiment        # the embed stage's data/embeddings/<task>/layers.npz
    python benchmarks/layer_probe_bench.py --synthetic             # generated blocks (no pipeline run needed)

Budgets are seeded stratified draws of the train rows; the selection rows are the validation split's first
500. The fit of ours includes its whole λ path (8 values, warm-started); scikit-learn fits 8 C values.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def synthetic(n: int = 6000, blocks: int = 7, width: int = 384, seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, blocks * width)).astype(np.float32)
    x[:, width:2 * width] += 0.3 * (2 * y[:, None] - 1) * rng.normal(0, 1, width)
    split = {"train": (x[: n - 1000], y[: n - 1000]), "val": (x[n - 1000:n - 500], y[n - 1000:n - 500])}
    return split, np.repeat(np.arange(blocks), width)


def from_task(task: str) -> tuple[dict, np.ndarray]:
    from embedtune.data import load_prepared
    from embedtune.layers import load_layer_features
    from embedtune.paths import TaskPaths

    paths = TaskPaths(ROOT, task)
    feats, groups = load_layer_features(paths.layer_features)
    data = load_prepared(paths.prepared)
    y = {s: data.splits[s].y for s in ("train", "val")}
    return {"train": (feats["train"], y["train"]), "val": (feats["val"][:500], y["val"][:500])}, groups


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    from embedtune.layers import fit_layer_probe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task")
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--budgets", default="64,256,1024")
    args = parser.parse_args()
    split, groups = synthetic() if args.synthetic or not args.task else from_task(args.task)
    (x, y), (xv, yv) = split["train"], split["val"]
    if y.ndim != 1:
        raise SystemExit("the scikit-learn side is single-label: pick a single-label task or --synthetic")
    k = int(y.max()) + 1
    print(f"features: {x.shape[1]} columns in {int(groups.max()) + 1} blocks; stored as float16: "
          f"{2 * x.shape[1] / 1024:.1f} KiB per row")
    print(f"{'budget':>8} {'ours (s)':>10} {'sklearn (s)':>12} {'ratio':>7} {'ours val':>9} {'sklearn val':>12}")
    rng = np.random.default_rng(0)
    for budget in (int(b) for b in args.budgets.split(",")):
        rows = rng.choice(len(y), size=min(budget, len(y)), replace=False)
        start = time.perf_counter()
        ours = fit_layer_probe(x[rows], y[rows], xv, yv, groups=groups, main_metric="accuracy", n_outputs=k)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        mean, sd = x[rows].mean(0), x[rows].std(0) + 1e-6
        best = 0.0
        for c in np.geomspace(1e-3, 1e1, 8):
            model = LogisticRegression(C=c, max_iter=300).fit((x[rows] - mean) / sd, y[rows])
            best = max(best, float((model.predict((xv - mean) / sd) == yv).mean()))
        t_sk = time.perf_counter() - start
        ours_val = float((ours.predict_proba(xv).argmax(1) == yv).mean())
        print(f"{budget:>8} {t_ours:>10.2f} {t_sk:>12.2f} {t_ours / t_sk:>7.2f} {ours_val:>9.3f} {best:>12.3f}")


if __name__ == "__main__":
    main()
