"""GPU path of the engine (bf16 autocast on CUDA); skipped without a CUDA device."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from embedtune.backbones import load_backbone
from embedtune.engine import TrainConfig, build_model, predict, train

from .conftest import make_text_rows

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_engine_trains_on_gpu_with_bf16(tiny_text_model_dir) -> None:
    enc = load_backbone(str(tiny_text_model_dir), kind="text", max_length=16)
    frame = make_text_rows(120)
    x, y = frame["text"].tolist(), (frame["label"] == "pos").to_numpy(np.int64)
    model = build_model(copy.deepcopy(enc), 2, method="full")
    cfg = TrainConfig(method="full", max_epochs=4, evals_per_run=4, batch_size=8, lr=1e-3, head_lr=1e-2, min_steps=40, patience=5,
                      main_metric="accuracy", seed=0)
    train(model, train_items=x[:80], train_y=y[:80], val_items=x[80:], val_y=y[80:], config=cfg, progress=False)
    assert next(model.parameters()).is_cuda
    probs = predict(model, model.encoder, x[80:], batch_size=16, device=torch.device("cuda"), multi_label=False)
    assert (probs.argmax(1) == y[80:]).mean() > 0.75
