"""The layer probe (layers.py): block features from one pass, and a head that finds the block that carries
the label and ignores blocks of noise."""

from __future__ import annotations

import numpy as np
import torch

from embedtune.backbones import load_backbone
from embedtune.layers import fit_layer_probe, layer_features


def _blocks_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four blocks of 16 columns; only block 1 (a lower one, not the last) carries the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, 64)).astype(np.float32)
    centers = np.random.default_rng(99).normal(0, 1, (3, 16))  # the same classes in every split
    x[:, 16:32] += 1.5 * centers[y]
    return x, y, np.repeat(np.arange(4), 16)


def test_the_head_reads_the_block_that_carries_the_label_and_ignores_noise() -> None:
    x, y, groups = _blocks_data(300, 0)
    xv, yv, _ = _blocks_data(200, 1)
    model = fit_layer_probe(x, y, xv, yv, groups=groups, main_metric="accuracy", n_outputs=3)
    mass = model.block_mass()
    assert mass[1] > 0.9 and mass[3] < 0.05, mass  # the last block is noise: not the one it reads
    xt, yt, _ = _blocks_data(400, 2)
    accuracy = float((model.predict_proba(xt).argmax(1) == yt).mean())
    assert accuracy > 0.8  # chance is 1/3
    assert model.info["path"][0]["blocks_used"] <= 1  # at λ_max at most the strongest block is at the edge
    again = fit_layer_probe(x, y, xv, yv, groups=groups, main_metric="accuracy", n_outputs=3)
    np.testing.assert_array_equal(again.weight, model.weight)  # same inputs, same numbers


def test_multi_label_heads_fit_one_sigmoid_per_label() -> None:
    x, y3, groups = _blocks_data(300, 3)
    y = np.stack([y3 == 0, y3 == 2], 1).astype(np.int64)
    xv, yv3, _ = _blocks_data(200, 4)
    yv = np.stack([yv3 == 0, yv3 == 2], 1).astype(np.int64)
    model = fit_layer_probe(x, y, xv, yv, groups=groups, main_metric="macro_f1", n_outputs=2)
    probs = model.predict_proba(xv)
    assert probs.shape == (200, 2) and model.info["thresholds"] is not None and model.block_mass()[1] > 0.8


def test_block_features_come_from_one_pass_with_one_group_per_layer(tiny_text_model_dir) -> None:
    enc = load_backbone(str(tiny_text_model_dir), kind="text", max_length=16).eval()
    feats, groups = layer_features(enc, ["a good film", "bad", "fine enough story"], batch_size=2)
    n_layers = len(enc.model.encoder.layer)
    assert feats.shape == (3, n_layers * enc.dim) and sorted(set(groups)) == list(range(n_layers))
    # mean pooling: the last layer's block is the probe's own embedding
    with torch.no_grad():
        final = enc(**enc.prepare(["a good film", "bad", "fine enough story"])).numpy()
    np.testing.assert_allclose(feats[:, groups == n_layers - 1], final, rtol=1e-4, atol=1e-5)
