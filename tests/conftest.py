"""Shared fixtures: tiny models built from configs, tiny generated data, the real data root when present."""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import subprocess
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
WORDS_POS = ["good", "great", "fine", "superb", "lovely"]
WORDS_NEG = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "movie", "plot", "was", "quite", "a", "film", "story"]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real offline data mirror (CI: ../shared/data); tests that need it skip when it is absent."""
    root = Path(os.environ.get("EMBEDTUNE_DATA_ROOT", REPO.parent / "shared" / "data"))
    if not (root / "medmnist").is_dir():
        pytest.skip(f"real data mirror not found at {root} (set EMBEDTUNE_DATA_ROOT)")
    return root


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT (hidden 32) with a word-level vocabulary, saved for from_pretrained."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS_POS, *WORDS_NEG, *FILLER]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab=str(path / "vocab.txt"), do_lower_case=True)  # transformers 5: `vocab=`
    assert tokenizer("good film")["input_ids"][1] != tokenizer.unk_token_id
    tokenizer.save_pretrained(path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_image_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer ViT (16 px, patch 4, hidden 32), saved for from_pretrained."""
    import torch
    from transformers import ViTConfig, ViTModel

    path = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64)
    ViTModel(config).save_pretrained(path)
    return path


def make_text_rows(n: int, *, seed: int = 0) -> pd.DataFrame:
    """Separable sentences: a positive or negative word among filler words; groups of 3 rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(FILLER, size=5)) + [str(rng.choice(WORDS_POS if label else WORDS_NEG))]
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" {i % 7}", "label": "pos" if label else "neg", "movie": f"m{i // 3}"})
    return pd.DataFrame(rows)


def make_images(n: int, *, seed: int = 0, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Separable grey images: class 1 is bright in the top half, class 0 in the bottom half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    for i, label in enumerate(y):
        half = slice(0, size // 2) if label else slice(size // 2, size)
        x[i, half] += 150
    return x, y.astype(np.int64)


@pytest.fixture
def project(tmp_path: Path, tiny_text_model_dir: Path, tiny_image_model_dir: Path) -> dict[str, object]:
    """A tiny project: params.yaml (smoke profile, tiny models) and generated text + image tasks."""
    data = tmp_path / "data_root"
    data.mkdir()
    make_text_rows(240).to_csv(data / "reviews.csv", index=False)
    x, y = make_images(160)
    np.savez(data / "shapes.npz", images=x, labels=y)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw = copy.deepcopy(raw)
    raw["profile"] = "smoke"
    raw["data_root"] = str(data)
    raw["tasks"] = {
        "toytext": {"source": "table", "path": "reviews.csv", "label_column": "label", "group_column": "movie",
                    "main_metric": "accuracy"},
        "toyimage": {"source": "npz", "path": "shapes.npz", "main_metric": "auroc"},
    }
    raw["profiles"]["gpu"]["embed"].pop("task_backbones", None)  # names the real 'legal' task
    smoke = raw["profiles"]["smoke"]
    smoke["embed"].update({"text_backbone": str(tiny_text_model_dir), "image_backbone": str(tiny_image_model_dir),
                           "max_length": 16, "image_size": 16, "batch_size": 32})
    smoke["budgets"] = {"sizes": [16, 48], "seeds": [0, 1]}
    # the suite's own scale, set here in full: `make smoke`'s profile is tuned for its wall time and must not
    # move what the tests assert on
    smoke["data"] = {"max_train": 400, "max_eval": 200, "max_val": 40}
    smoke["shift"] = {"max_rows": 60, "text_strengths": [0.1, 0.3], "severities": [1, 3, 5], "seed": 0}
    smoke["probe"] = {"c_grid": [0.01, 0.1, 1.0, 10.0], "max_iter": 200, "grid_extensions": 2}
    smoke["finetune"].update({"max_epochs": 2, "batch_size": 8, "min_steps": 4, "max_steps": 8, "evals_per_run": 2,
                              "lr_grid": {"full": [1.0e-3, 3.0e-3], "lp_ft": [5.0e-4, 1.0e-3],
                                          "lora": [1.0e-3, 3.0e-3], "partial": [1.0e-3, 3.0e-3]},
                              "search_budgets": [16], "partial_blocks": {"text": 1, "image": 1},
                              "lr_restarts": 2, "max_rounds": 3})
    # CI runs the suite with the training arithmetic forced each way (.ci/run): fp32 on any host, bf16 where
    # the CPU has it natively; unset, the profile's own setting (auto) decides
    forced = os.environ.get("EMBEDTUNE_TEST_PRECISION")
    if forced:
        if forced not in ("auto", "fp32", "bf16"):
            raise ValueError(f"EMBEDTUNE_TEST_PRECISION: bad value {forced!r}; allowed values: auto, fp32, bf16")
        smoke["finetune"]["precision"] = forced
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return {"root": tmp_path, "params_path": params_path, "data_root": data, "raw": raw}


EMBEDDED_IMAGE = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+")


def load_script(relative: str) -> types.ModuleType:
    """A script of the repository that is not in the package (`benchmarks/…`, `scripts/…`), imported from
    its file."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, f"cannot import {relative}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def visible_html(page: Path) -> str:
    """A rendered page without its embedded images (base64 can spell anything: a path, "NaN")."""
    return EMBEDDED_IMAGE.sub("", page.read_text(encoding="utf-8"))


def dvc_pipeline(root: Path) -> subprocess.CompletedProcess:
    """The real pipeline on a tiny project: this repository's dvc.yaml, src/ and notebooks/ beside the
    project's params.yaml, then `dvc repro` (what `make smoke` and `make repro` run)."""
    from embedtune import scratch

    scratch.copy_pipeline_code(root)
    return scratch.repro(root)
