"""BatchNorm during fine-tuning (``finetune.bn_mode``): ``frozen`` keeps the pretrained running statistics
and affine weights train; ``train`` updates the statistics from each (small) batch; ``recalibrate`` freezes
them in the step and re-estimates them on the training items after each round."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_batchnorm_mode(model: nn.Module, mode: str) -> None:
    """Apply the BatchNorm policy after ``model.train()``.

    - ``frozen``: BatchNorm layers stay in eval mode while the rest trains: they normalise with the
      pretrained running statistics, so training and evaluation run the same network and an LP-FT head
      sees exactly the features its probe was fitted on. (Their affine weights still train.)
    - ``recalibrate``: batch statistics during training; before every evaluation the running statistics
      are re-estimated on the training subset (`recalibrate_batchnorm`).
    - ``train``: PyTorch's default (batch statistics, running averages with the checkpoint's momentum —
      0.01 for EfficientNet-Lite0, so after a short fine-tune they are still mostly ImageNet's).
    """
    if mode not in ("frozen", "recalibrate", "train"):
        raise ValueError(f"bn_mode: bad value {mode!r}; allowed values: ['frozen', 'recalibrate', 'train']")
    if mode == "frozen":
        for m in batchnorm_layers(model):
            m.eval()


@torch.no_grad()
def recalibrate_batchnorm(model: Any, items: Any, *, batch_size: int, device: torch.device) -> int:
    """Re-estimate BatchNorm running statistics on `items` (cumulative average, model otherwise in eval).

    A short fine-tune with EfficientNet-Lite0's momentum (0.01) leaves the running statistics mostly
    ImageNet's while the weights move, so the eval-mode network no longer matches the trained one.
    Returns the number of BatchNorm layers reset (0 for LayerNorm models: nothing to do).
    """
    norms = batchnorm_layers(model)
    if not norms:
        return 0
    was_training = model.training
    model.eval()
    saved = []
    for m in norms:
        saved.append(m.momentum)
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
        m.train()
    n = len(items)
    for start in range(0, n, batch_size):
        chunk = items[start:start + batch_size]
        batch = {k: v.to(device) for k, v in model.encoder.prepare(chunk).items()}
        model.encoder(**batch)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)
    return len(norms)
