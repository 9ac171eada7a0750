"""Training engine: what trains per method, learning, resume, non-finite loss, BatchNorm policy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from embedtune.backbones import load_backbone
from embedtune.costs import count_parameters
from embedtune.engine import (
    NonFiniteLossError,
    TrainConfig,
    build_model,
    predict,
    recalibrate_batchnorm,
    set_batchnorm_mode,
    train,
)

from .conftest import make_images, make_text_rows


@pytest.fixture
def text_setup(tiny_text_model_dir):
    enc = load_backbone(str(tiny_text_model_dir), kind="text", max_length=16)
    frame = make_text_rows(120)
    x = frame["text"].tolist()
    y = (frame["label"] == "pos").to_numpy(np.int64)
    return enc, x, y


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _cfg(method: str, **kw) -> TrainConfig:
    base = dict(method=method, max_epochs=2, evals_per_run=2, batch_size=8, lr=1e-3, head_lr=1e-2, min_steps=6, patience=5,
                main_metric="accuracy", seed=0, lora_rank=2)
    base.update(kw)
    return TrainConfig(**base)


def test_full_changes_backbone_weights(text_setup) -> None:
    enc, x, y = text_setup
    model = build_model(copy.deepcopy(enc), 2, method="full")
    before = _snapshot(model.encoder)
    train(model, train_items=x[:40], train_y=y[:40], val_items=x[80:], val_y=y[80:], config=_cfg("full"), progress=False)
    after = model.encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_lora_trains_only_adapters_and_head(text_setup) -> None:
    enc, x, y = text_setup
    model = build_model(copy.deepcopy(enc), 2, method="lora", lora_rank=2)
    full = build_model(copy.deepcopy(enc), 2, method="full")
    trainable, _ = count_parameters(model)
    assert trainable < 0.1 * count_parameters(full)[0]
    before = _snapshot(model)
    train(model, train_items=x[:40], train_y=y[:40], val_items=x[80:], val_y=y[80:], config=_cfg("lora"), progress=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k or k.startswith("head.") for k in changed)


def test_lp_ft_head_starts_from_probe(text_setup) -> None:
    enc, _, _ = text_setup
    w = np.random.default_rng(0).normal(size=(2, enc.dim)).astype(np.float32)
    b = np.array([0.5, -0.5], np.float32)
    model = build_model(copy.deepcopy(enc), 2, method="lp_ft", probe_head=(w, b))
    assert np.array_equal(model.head.weight.detach().numpy(), w) and np.array_equal(model.head.bias.detach().numpy(), b)
    with pytest.raises(ValueError, match="lp_ft needs the linear probe"):
        build_model(copy.deepcopy(enc), 2, method="lp_ft")


def test_loss_falls_and_learns_toy_task(text_setup) -> None:
    enc, x, y = text_setup
    model = build_model(copy.deepcopy(enc), 2, method="full")
    result = train(model, train_items=x[:80], train_y=y[:80], val_items=x[80:], val_y=y[80:],
                   config=_cfg("full", max_epochs=4, evals_per_run=4, min_steps=40), progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    probs = predict(model, model.encoder, x[80:], batch_size=16, device=torch.device("cpu"), multi_label=False)
    assert (probs.argmax(1) == y[80:]).mean() > 0.75


def test_same_seed_same_numbers(text_setup) -> None:
    enc, x, y = text_setup
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(copy.deepcopy(enc), 2, method="full")
        result = train(model, train_items=x[:40], train_y=y[:40], val_items=x[80:], val_y=y[80:], config=_cfg("full"),
                       progress=False)
        runs.append(result.history)
    assert runs[0] == [dict(h, seconds=runs[0][i]["seconds"]) for i, h in enumerate(runs[1])]


class _Interrupt(Exception):
    pass


def test_kill_and_resume_matches_uninterrupted(text_setup, tmp_path) -> None:
    enc, x, y = text_setup
    cfg = _cfg("full", max_epochs=3, evals_per_run=3, min_steps=9)
    torch.manual_seed(0)
    reference = build_model(copy.deepcopy(enc), 2, method="full")
    ref = train(reference, train_items=x[:40], train_y=y[:40], val_items=x[80:], val_y=y[80:], config=cfg,
                checkpoint_dir=tmp_path / "ref", progress=False)

    def interrupt(epoch: int, step: int) -> None:
        if epoch == 1 and step == 2:
            raise _Interrupt  # dies mid-epoch, after the epoch-0 checkpoint

    torch.manual_seed(0)
    model = build_model(copy.deepcopy(enc), 2, method="full")
    with pytest.raises(_Interrupt):
        train(model, train_items=x[:40], train_y=y[:40], val_items=x[80:], val_y=y[80:], config=cfg,
              checkpoint_dir=tmp_path / "run", progress=False, on_step=interrupt)
    torch.manual_seed(123)  # a fresh process: different RNG state, fresh model
    restarted = build_model(copy.deepcopy(enc), 2, method="full")
    res = train(restarted, train_items=x[:40], train_y=y[:40], val_items=x[80:], val_y=y[80:], config=cfg,
                checkpoint_dir=tmp_path / "run", progress=False)
    assert res.resumed_from_epoch == 0
    assert [h["val_metric"] for h in res.history] == [h["val_metric"] for h in ref.history]
    assert [h["train_loss"] for h in res.history] == pytest.approx([h["train_loss"] for h in ref.history], abs=1e-6)
    for k, v in reference.state_dict().items():
        assert torch.allclose(v, restarted.state_dict()[k], atol=1e-6), k


def test_non_finite_loss_stops_with_clear_error(text_setup) -> None:
    enc, x, y = text_setup
    model = build_model(copy.deepcopy(enc), 2, method="full")
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="non-finite training loss .* lower the learning rate"):
        train(model, train_items=x[:16], train_y=y[:16], val_items=x[80:], val_y=y[80:], config=_cfg("full"), progress=False)


@pytest.fixture(scope="module")
def effnet():
    return load_backbone("pkg:efficientnet-lite0", kind="image", image_size=32)


def test_batchnorm_frozen_keeps_pretrained_statistics(effnet) -> None:
    x, y = make_images(48, size=28)
    model = build_model(copy.deepcopy(effnet), 2, method="full")
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    train(model, train_items=x[:32], train_y=y[:32], val_items=x[32:], val_y=y[32:],
          config=_cfg("full", max_epochs=1, evals_per_run=1, min_steps=2, bn_mode="frozen", main_metric="auroc"), progress=False)
    assert torch.equal(bn.running_mean, before)


def test_batchnorm_train_mode_barely_moves_and_recalibration_fixes_it(effnet) -> None:
    """EfficientNet-Lite0's BN momentum is 0.01: after a short fine-tune in plain train mode the running
    statistics are still ImageNet's; recalibration sets them to the training data's batch statistics."""
    x, _ = make_images(64, size=28)
    model = build_model(copy.deepcopy(effnet), 2, method="full")
    stem = model.encoder.model._bn0
    assert stem.momentum == pytest.approx(0.01)
    imagenet_mean = stem.running_mean.clone()
    model.train()
    set_batchnorm_mode(model, "train")
    with torch.no_grad():
        for start in range(0, 64, 16):
            model(**model.encoder.prepare(x[start:start + 16]))
    drift_train_mode = (stem.running_mean - imagenet_mean).abs().mean()
    recalibrate_batchnorm(model, x, batch_size=64, device=torch.device("cpu"))
    # the stem BN's input is conv_stem(normalised pixels): its batch mean is what recalibration must hold
    with torch.no_grad():
        pixels = model.encoder.prepare(x)["pixels"]
        pixels = torch.nn.functional.interpolate(pixels, size=(32, 32), mode="bilinear", align_corners=False)
        stem_in = model.encoder.model._conv_stem((pixels - model.encoder.mean) / model.encoder.std)
    data_mean = stem_in.mean(dim=(0, 2, 3))
    assert torch.allclose(stem.running_mean, data_mean, atol=1e-4)
    assert (stem.running_mean - imagenet_mean).abs().mean() > 5 * drift_train_mode


def test_lora_on_efficientnet_pointwise_convs(effnet) -> None:
    model = build_model(copy.deepcopy(effnet), 2, method="lora", lora_rank=2)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("_project_conv.lora_A" in n for n in names) and "head.weight" in names
    assert count_parameters(model)[0] < 0.1 * count_parameters(build_model(copy.deepcopy(effnet), 2, method="full"))[0]


def test_length_grouped_order_keeps_passes_and_groups_lengths() -> None:
    """Every item once per pass, no batch spanning passes, similar lengths within a micro-batch, seeded."""
    from embedtune.ordering import length_grouped_order

    lengths = np.random.default_rng(0).integers(5, 60, 100)
    rng = np.random.default_rng([3, 0])
    order = np.concatenate([rng.permutation(100) for _ in range(2)])
    grouped = length_grouped_order(order, lengths, pass_size=100, micro_batch=10, group=4,
                                   rng=np.random.default_rng(1))
    for p in range(2):
        assert sorted(grouped[p * 100:(p + 1) * 100]) == list(range(100))
    padded = lambda o: sum(10 * lengths[o[i:i + 10]].max() for i in range(0, len(o), 10))  # noqa: E731
    assert padded(grouped) < 0.8 * padded(order)
    again = length_grouped_order(order, lengths, pass_size=100, micro_batch=10, group=4, rng=np.random.default_rng(1))
    assert np.array_equal(grouped, again)
    # a short pass (2 micro-batches) groups by at most one: batch composition stays random
    short = np.random.default_rng(2).permutation(20)
    assert np.array_equal(length_grouped_order(short, lengths, pass_size=20, micro_batch=10, group=4,
                                               rng=np.random.default_rng(1)), short)


def test_anneal_factor_warms_up_decays_to_the_floor_at_the_plan_and_stays() -> None:
    from embedtune.stopping import anneal_factor

    factors = [anneal_factor(s, warmup=4, planned=40, floor=0.05) for s in range(60)]
    assert factors[0] < factors[3] < factors[4] == 1.0  # warmup
    assert all(a >= b for a, b in zip(factors[4:41], factors[5:41]))  # monotone decay
    assert factors[40] == pytest.approx(0.05) and set(factors[40:]) == {0.05}


def test_anneal_keeps_an_annealed_round_and_never_stops_before_the_plan(text_setup) -> None:
    """Under anneal + noise, patience 1: every planned round runs, the kept round's LR is ≤ 10% of its peak,
    extension rounds run at the floor, and a run is still improving only when it ended at the cap on a gain."""
    enc, x, y = text_setup
    cfg = _cfg("full", max_epochs=4, evals_per_run=4, min_steps=16, max_rounds=7, patience=1,
               lr_schedule="anneal", lr_floor=0.05, stop_on="noise")
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(enc), 2, method="full")
    result = train(model, train_items=x[:40], train_y=y[:40], val_items=x[80:], val_y=y[80:], config=cfg,
                   progress=False)
    history = result.history
    assert len(history) >= 4  # the plan (4 rounds) always finishes
    kept = next(h for h in history if h["epoch"] == result.best_epoch)
    assert kept["lr_frac"] <= 0.1 + 1e-9 and result.best_epoch >= 3
    assert all(h["lr_frac"] == pytest.approx(0.05) for h in history[3:])
    assert all(h["val_se"] > 0 for h in history)
    # patience 1 counted from the plan's last round: the run stops at the first round without a gain
    assert all(h["gained"] for h in history[3:-1])
    if len(history) < 7:
        assert not history[-1]["gained"] and result.stop_reason == "patience" and not result.still_improving
    else:
        assert result.still_improving == history[-1]["gained"]
