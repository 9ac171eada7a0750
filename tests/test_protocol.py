"""The fair protocol (runs.py, gridsearch.py, probe.py, partial.py) and the shift arm (shift.py), on tiny models and data."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from embedtune import runs
from embedtune.backbones import load_backbone
from embedtune.data import selection_index
from embedtune.engine import TrainConfig, build_model, schedule, train
from embedtune.gridsearch import grid_search
from embedtune.outputs import learned
from embedtune.partial import PartialEncoder, build_feature_bank
from embedtune.probe import fit_classic, fit_probe
from embedtune.shift import CORRUPTIONS, corrupt, perturb_texts, psnr
from embedtune.stopping import StopOutcome, replay_stopping

from .conftest import make_images, make_text_rows


def test_grid_search_extends_an_edge_pick_until_inside() -> None:
    # the score peaks at 1e-2, below the grid: the search must walk down until the pick is interior
    found = grid_search(lambda v: -abs(np.log10(v) + 2), (1.0, 10.0, 100.0), step=10.0, extensions=5)
    assert found["chosen"] == pytest.approx(1e-2) and not found["edge_limited"]
    assert [v for v, _ in found["path"]][0] == pytest.approx(1e-3)
    limited = grid_search(lambda v: v, (1.0, 2.0), step=2.0, extensions=1)
    assert limited["chosen"] == 4.0 and limited["edge_limited"]


def _probe_data(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=8)
    x = rng.normal(size=(300, 8))
    y = (x @ w + rng.normal(scale=2.0, size=300) > 0).astype(np.int64)
    return x[:60], y[:60], x[60:160], y[60:160], x[160:], y[160:]


def test_probe_extends_c_grid_at_an_edge() -> None:
    xt, yt, xv, yv, _, _ = _probe_data()
    _, plain = fit_probe(xt, yt, xv, yv, c_grid=(100.0, 1000.0), main_metric="accuracy", n_outputs=2)
    _, extended = fit_probe(xt, yt, xv, yv, c_grid=(100.0, 1000.0), main_metric="accuracy", n_outputs=2,
                            grid_extensions=4)
    tried = [e["c"] for e in extended["c_path"]]
    assert len(tried) > 2 and len(plain["c_path"]) == 2
    assert not extended["edge_limited"] or len(tried) == 6  # inside the grid, or stopped at the stated limit


def test_changing_test_labels_never_changes_a_pick() -> None:
    xt, yt, xv, yv, xs, ys = _probe_data()
    _, info = fit_probe(xt, yt, xv, yv, c_grid=(0.01, 0.1, 1.0), main_metric="accuracy", n_outputs=2)
    # the fit's inputs are train and selection rows only (test rows cannot reach a pick), and it is
    # deterministic: the same rows give the same pick and path
    _, again = fit_probe(xt, yt, xv, yv, c_grid=(0.01, 0.1, 1.0), main_metric="accuracy", n_outputs=2)
    assert again["c"] == info["c"] and again["c_path"] == info["c_path"]
    # whereas changing the selection labels moves it: selection really reads those rows (probe and classic)
    moved = [fit_probe(xt, yt, xv, np.random.default_rng(s).integers(0, 2, len(yv)), c_grid=(0.001, 0.01, 0.1, 1.0),
                       main_metric="accuracy", n_outputs=2)[1]["c"] for s in range(6)]
    assert len(set(moved)) > 1
    scores = [fit_classic(xt, yt, xv, labels, c_grid=(0.01, 0.1, 1.0), main_metric="accuracy", seed=0)[1]["val_score"]
              for labels in (yv, 1 - yv)]
    assert scores[0] != scores[1]


def test_every_method_selects_on_the_same_rows(project) -> None:
    from embedtune.params import load_params
    from embedtune.paths import TaskPaths
    from embedtune.stages import embed, prepare, probe, shift

    params = load_params(project["params_path"])
    root = project["root"]
    prepare.run(params, "toytext", root=root)
    shift.run(params, "toytext", root=root)
    embed.run(params, "toytext", root=root, progress=False)
    frames = probe.run(params, "toytext", root=root)
    ctx = runs.stage_context(params, "toytext", "full", root=root, progress=False)
    n_val = params.scale.data.max_val
    n_sel = min(n_val, len(ctx.data.splits["val"].y))
    assert len(ctx.val.y) == n_sel
    assert set(frames["results"].query("method == 'probe'")["n_val"]) == set(frames["results"].query("method == 'classic'")["n_val"]) == {n_sel}
    data_val = ctx.data.splits["val"]
    assert np.array_equal(ctx.val.y, data_val.y[selection_index(ctx.data, n_val)])
    # shift sets never enter selection: altering their labels leaves every pick unchanged
    sets_dir = TaskPaths(root, "toytext").shift
    import json

    for f in sets_dir.glob("set[0-9]*.json"):
        raw = json.loads(f.read_text())
        raw["y"] = [1 - v for v in raw["y"]]
        f.write_text(json.dumps(raw))
    again = probe.run(params, "toytext", root=root)
    assert list(again["results"].query("method == 'probe'")["c"]) == list(frames["results"].query("method == 'probe'")["c"])
    assert list(again["results"].query("method == 'classic'")["c"]) == list(frames["results"].query("method == 'classic'")["c"])


def test_partial_keeps_lower_blocks_and_trains_top_k(tiny_text_model_dir) -> None:
    enc = load_backbone(str(tiny_text_model_dir), kind="text", max_length=16)
    frame = make_text_rows(120)
    x, y = frame["text"].tolist(), (frame["label"] == "pos").to_numpy(np.int64)
    base_before = {k: v.clone() for k, v in enc.state_dict().items()}
    bank = build_feature_bank(enc, x, top_k=1)
    partial = PartialEncoder(copy.deepcopy(enc), 1)
    with torch.no_grad():  # at initialisation the partial encoder reproduces the whole encoder
        assert torch.allclose(partial.eval()(**partial.prepare(bank[np.arange(8)])), enc.eval()(**enc.prepare(x[:8])),
                              atol=1e-5)
    top_before = {k: v.clone() for k, v in partial.state_dict().items()}
    model = build_model(partial, 2, method="partial")
    cfg = TrainConfig(method="partial", max_epochs=2, evals_per_run=2, batch_size=8, lr=1e-3, head_lr=1e-2,
                      min_steps=6, main_metric="accuracy")
    train(model, train_items=bank[np.arange(40)], train_y=y[:40], val_items=bank[np.arange(80, 120)], val_y=y[80:],
          config=cfg, progress=False)
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in base_before.items())  # frozen blocks bit-identical
    assert any(not torch.equal(v, model.encoder.state_dict()[k]) for k, v in top_before.items())  # top k trained
    assert len(partial.blocks) == 1


def test_lora_targets_the_listed_modules(tiny_text_model_dir) -> None:
    enc = load_backbone(str(tiny_text_model_dir), kind="text", max_length=16)
    model = build_model(copy.deepcopy(enc), 2, method="lora", lora_rank=2, lora_targets=("query", "value"))
    adapted = {n.rsplit(".lora_", 1)[0] for n, _ in model.encoder.model.named_parameters() if "lora_" in n}
    assert adapted and all(n.endswith(("query", "value")) for n in adapted)
    default = build_model(copy.deepcopy(enc), 2, method="lora", lora_rank=2)
    adapted_all = {n.rsplit(".lora_", 1)[0] for n, _ in default.encoder.model.named_parameters() if "lora_" in n}
    assert {n.rsplit(".", 1)[-1] for n in adapted_all} == {"query", "key", "value", "dense"}
    with pytest.raises(ValueError, match="lora_targets"):
        build_model(copy.deepcopy(enc), 2, method="lora", lora_rank=2, lora_targets=("no_such_layer",))


def test_editing_a_training_module_changes_the_run_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = Path(runs.__file__).parent
    copy_dir = tmp_path / "pkg"
    copy_dir.mkdir()
    for name in runs.TRAINING_MODULES:
        (copy_dir / name).write_bytes((pkg / name).read_bytes())
    monkeypatch.setattr(runs, "__file__", str(copy_dir / "runs.py"))
    before = runs.source_digest()
    key = dict(config_digest="c", subset=np.arange(4), selection=np.arange(3), data_checksum="d", weights_hash="w",
               probe_inputs=None, shift_digest="s", extra={})
    k1 = runs.run_identity(source=before, **key)
    with open(copy_dir / "engine.py", "a") as fh:
        fh.write("\n# an edit\n")
    after = runs.source_digest()
    assert after != before and runs.run_identity(source=after, **key) != k1
    assert runs.run_identity(source=before, **{**key, "subset": np.arange(5)}) != k1


def test_schedule_gives_enough_steps_and_rounds() -> None:
    cfg = TrainConfig(method="full", max_epochs=4, batch_size=16, min_steps=60, max_steps=160, evals_per_run=4)
    assert schedule(16, cfg).total_steps == 60  # tiny budget: min_steps
    assert schedule(1024, cfg).total_steps == 160  # capped
    plan = schedule(256, cfg)
    assert plan.total_steps == 64 and plan.rounds == 4 and plan.eval_every == 16


def test_rounds_go_past_the_planned_length_up_to_max_rounds() -> None:
    cfg = TrainConfig(method="full", max_epochs=4, batch_size=16, min_steps=60, max_steps=160, evals_per_run=4,
                      max_rounds=10)
    plan = schedule(256, cfg)
    assert (plan.eval_every, plan.planned_steps, plan.rounds, plan.total_steps) == (16, 64, 10, 160)


def _scripted_scores(monkeypatch: pytest.MonkeyPatch, scores: list[float], n_val: int) -> None:
    """Make the engine's validation score (arrays of `n_val` rows) follow `scores`, one per round, with a
    selection-row noise of 0.05 (the scripted gains of 0.1 are beyond it)."""
    from embedtune import engine

    monkeypatch.setattr(engine, "bootstrap_se", lambda *args, **kwargs: 0.05)
    it = iter([0.0, *scores])  # the first call scores the model before its first step (the start)
    real = engine.selection_score
    monkeypatch.setattr(engine, "selection_score",
                        lambda probs, y, metric: (next(it, -1.0), None) if len(y) == n_val else real(probs, y, metric))


@pytest.mark.parametrize(("scores", "rounds", "best", "improving"), [
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 6, 5, True),   # keeps improving past the 2 planned rounds → the cap
    ([0.1, 0.5, 0.4, 0.3, 0.9, 0.9], 4, 1, False),  # patience 2 stops it, best restored
])
def test_training_stops_on_patience_or_at_the_round_cap(tiny_text_model_dir, monkeypatch: pytest.MonkeyPatch,
                                                         scores: list[float], rounds: int, best: int,
                                                         improving: bool) -> None:
    from embedtune.backbones import load_backbone

    from .conftest import make_text_rows

    enc = load_backbone(str(tiny_text_model_dir), kind="text", max_length=16)
    frame = make_text_rows(48)  # 32 train rows, 12 validation rows (a round sees 16)
    x, y = frame["text"].tolist(), (frame["label"] == "pos").to_numpy(np.int64)
    torch.manual_seed(0)
    model = build_model(enc, 2, method="full")
    _scripted_scores(monkeypatch, scores, n_val=12)
    cfg = TrainConfig(method="full", max_epochs=1, batch_size=8, min_steps=4, evals_per_run=2, max_rounds=6,
                      patience=2, lr=1e-3)
    result = train(model, train_items=x[:32], train_y=y[:32], val_items=x[32:44], val_y=y[32:44], config=cfg,
                   progress=False)
    assert len(result.history) == rounds
    assert result.best_epoch == best and result.still_improving is improving
    assert result.stopped_early is (rounds < 6)
    assert result.steps == rounds * 2 and result.extra["planned_steps"] == 4


@pytest.mark.parametrize(("stop_on", "scores", "losses", "rounds", "best", "improving"), [
    # the loss turns up (overconfidence) while accuracy still climbs: val_loss stops at the metric's best
    ("val_loss", [0.1, 0.2, 0.3, 0.4, 0.4, 0.4], [1.0, 0.9, 1.1, 1.2, 1.3, 1.4], 4, 3, True),
    ("either", [0.1, 0.2, 0.3, 0.4, 0.4, 0.4], [1.0, 0.9, 1.1, 1.2, 1.3, 1.4], 6, 3, False),
    # the metric dips by chance while the loss still falls: metric stops early, either goes on
    ("metric", [0.5, 0.4, 0.45, 0.3, 0.3, 0.3], [1.0, 0.9, 0.8, 0.7, 0.75, 0.8], 3, 0, False),
    ("either", [0.5, 0.4, 0.45, 0.3, 0.3, 0.3], [1.0, 0.9, 0.8, 0.7, 0.75, 0.8], 6, 0, False),
])
def test_stop_on_names_what_patience_watches(tiny_text_model_dir, monkeypatch: pytest.MonkeyPatch, stop_on: str,
                                             scores: list[float], losses: list[float], rounds: int, best: int,
                                             improving: bool) -> None:
    from embedtune import engine
    from embedtune.backbones import load_backbone

    from .conftest import make_text_rows

    enc = load_backbone(str(tiny_text_model_dir), kind="text", max_length=16)
    frame = make_text_rows(48)
    x, y = frame["text"].tolist(), (frame["label"] == "pos").to_numpy(np.int64)
    torch.manual_seed(0)
    model = build_model(enc, 2, method="full")
    _scripted_scores(monkeypatch, scores, n_val=12)
    scripted_losses = iter([2.0, *losses])  # the first call scores the start
    monkeypatch.setattr(engine, "_val_loss", lambda probs, y: next(scripted_losses))
    cfg = TrainConfig(method="full", max_epochs=1, batch_size=8, min_steps=4, evals_per_run=2, max_rounds=8,
                      patience=2, stop_on=stop_on, lr=1e-3)
    result = train(model, train_items=x[:32], train_y=y[:32], val_items=x[32:44], val_y=y[32:44], config=cfg,
                   progress=False)
    assert len(result.history) == rounds and result.stop_reason == "patience"
    assert result.best_epoch == best and result.still_improving is improving
    replayed = replay_stopping(scores, losses, stop_on=stop_on, patience=2, max_rounds=8)
    assert replayed == StopOutcome(rounds, best, improving, "patience")  # the pilot's replay = the loop


def test_replay_stops_at_the_cap_and_declines_rounds_it_was_not_given() -> None:
    climbing, falling = [0.1, 0.2, 0.3, 0.4], [1.0, 0.9, 0.8, 0.7]
    assert replay_stopping(climbing, falling, stop_on="either", patience=2, max_rounds=4) == StopOutcome(
        4, 3, True, "round cap")
    assert replay_stopping(climbing, falling, stop_on="either", patience=2, max_rounds=8) is None
    assert replay_stopping([0.5, float("nan"), 0.4], [1.0, 1.1, 1.2], stop_on="metric", patience=2,
                           max_rounds=8) == StopOutcome(3, 0, False, "patience")


def test_rank_shards_cover_each_micro_batch_and_never_run_empty() -> None:
    from embedtune.engine import rank_shard

    batch = np.arange(10, 17)  # 7 items over 2 ranks: 4 + 3
    shards = [rank_shard(batch, r, 2) for r in range(2)]
    assert sorted(np.concatenate(shards).tolist()) == batch.tolist()
    short = np.array([5])  # fewer items than ranks: repeated so every rank gets one
    assert [rank_shard(short, r, 3).tolist() for r in range(3)] == [[5], [5], [5]]
    assert rank_shard(batch, 0, 1) is batch


# ------------------------------------------------------------------------------------------------ shift


def test_text_perturbations_are_seeded_keep_labels_and_change_strings() -> None:
    texts = make_text_rows(60)["text"].tolist()
    a = perturb_texts(texts, strength=0.3, seed=0)
    assert a == perturb_texts(texts, strength=0.3, seed=0)
    assert a != perturb_texts(texts, strength=0.3, seed=1)
    assert sum(x != y for x, y in zip(a, texts)) > len(texts) // 2 and len(a) == len(texts)
    mild = perturb_texts(texts, strength=0.05, seed=0)
    assert sum(x != y for x, y in zip(mild, texts)) < sum(x != y for x, y in zip(a, texts))
    assert "Spotify" not in perturb_texts(["Spotify may end this at any time."], strength=0.0, seed=0)[0]


def test_corruptions_are_seeded_and_severity_is_monotone() -> None:
    x, _ = make_images(12, size=28)
    for name in CORRUPTIONS:
        once = corrupt(x, name, 3, seed=0)
        assert once.dtype == np.uint8 and once.shape == x.shape
        assert np.array_equal(once, corrupt(x, name, 3, seed=0))
    # pixelate is left out: at 28 px the registry's factors give 22/19/16/14/11 px, and BOX resampling to
    # sizes that do not divide 28 aliases, so its PSNR is not monotone (its resolution is: checked below)
    sizes = [int(28 * CORRUPTIONS["pixelate"][1][s - 1]) for s in range(1, 6)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 5
    for name in ("gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise", "gaussian_blur", "brightness_up",
                 "brightness_down", "contrast_up", "contrast_down", "gamma_corr_up", "gamma_corr_down",
                 "jpeg_compression"):
        quality = [np.mean([psnr(a, b) for a, b in zip(x, corrupt(x, name, s, seed=0))]) for s in range(1, 6)]
        assert all(q1 >= q2 - 1e-9 for q1, q2 in zip(quality, quality[1:])), (name, quality)


def _medmnistc_corruptions() -> dict[str, object]:
    """MedMNIST-C's own corruption classes (wheel installed --no-deps): cv2, scikit-image and torchvision are
    stubbed, since the classes compared here do not call them."""
    import importlib
    import sys
    import types

    pytest.importorskip("medmnistc", reason="pip install --no-deps medmnistc (make install does)")
    for name in ("cv2", "skimage"):
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.FONT_HERSHEY_DUPLEX = 0
            sys.modules[name] = stub
    noise = importlib.import_module("medmnistc.corruptions.noise")
    compression = importlib.import_module("medmnistc.corruptions.compression")
    return {"noise": noise, "compression": compression}


def test_corruptions_match_medmnistc_source() -> None:
    from PIL import Image, ImageEnhance

    mods = _medmnistc_corruptions()
    x, _ = make_images(6, size=28)
    params = CORRUPTIONS
    for severity in (1, 3, 5):
        pix = mods["compression"].Pixelate(severity_params=list(params["pixelate"][1]))
        jpg = mods["compression"].JPEGCompression(severity_params=list(params["jpeg_compression"][1]))
        ours_pix, ours_jpg = corrupt(x, "pixelate", severity, seed=0), corrupt(x, "jpeg_compression", severity, seed=0)
        for i, img in enumerate(x):
            assert np.array_equal(ours_pix[i], pix.apply(Image.fromarray(img), severity=severity - 1))
            assert np.array_equal(ours_jpg[i], jpg.apply(Image.fromarray(img), severity=severity - 1))
        # noise: the same distribution (their global NumPy RNG, our seeded one): PSNR within 0.5 dB
        for ours_name, cls in (("gaussian_noise", "GaussianNoise"), ("speckle_noise", "SpeckleNoise"),
                               ("shot_noise", "ShotNoise")):
            ref = getattr(mods["noise"], cls)(severity_params=list(params[ours_name][1]))
            np.random.seed(0)
            theirs = np.stack([ref.apply(Image.fromarray(img), severity=severity - 1) for img in x])
            ours = corrupt(x, ours_name, severity, seed=0)
            assert abs(np.mean([psnr(a, b) for a, b in zip(x, ours)])
                       - np.mean([psnr(a, b) for a, b in zip(x, theirs)])) < 0.5, ours_name
        # brightness / contrast: the same PIL enhancers MedMNIST-C calls
        for name, enhancer in (("brightness_up", ImageEnhance.Brightness), ("contrast_down", ImageEnhance.Contrast)):
            c = params[name][1][severity - 1]
            expected = np.stack([np.asarray(enhancer(Image.fromarray(img)).enhance(c)) for img in x])
            assert np.array_equal(corrupt(x, name, severity, seed=0), expected)


def test_learned_reads_the_training_loss_only() -> None:
    assert learned([{"train_loss": 1.2}, {"train_loss": 0.5}], 0.8)
    assert not learned([{"train_loss": 1.17}, {"train_loss": 1.14}, {"train_loss": 1.13}], 0.8)
    assert learned([{"train_loss": 1.2}], 0.8)  # one round: nothing to judge


def test_a_run_that_did_not_learn_restarts_once_at_a_lower_rate(project, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from embedtune.params import load_params
    from embedtune.paths import TaskPaths
    from embedtune.stages import embed, prepare, probe, shift

    params = load_params(project["params_path"])
    ft = dataclasses.replace(params.scale.finetune, lr_restarts=1)
    params = dataclasses.replace(params, profiles={**params.profiles,
                                                   params.profile: dataclasses.replace(params.scale, finetune=ft)})
    root = project["root"]
    prepare.run(params, "toytext", root=root)
    shift.run(params, "toytext", root=root)
    embed.run(params, "toytext", root=root, progress=False)
    probe.run(params, "toytext", root=root)
    ctx = runs.stage_context(params, "toytext", "full", root=root, progress=False)
    budget = int(sorted(ctx.subsets["subsets"]["0"], key=int)[0])
    lr = ft.lr_grid["full"][0]
    # the search (restarts=0) never restarts, whatever the loss did
    searched = runs.run_one(ctx, seed=0, budget=budget, lr=lr, progress=False, score_shift=False, restarts=0)
    assert searched["row"]["lr_restarts"] == 0 and searched["row"]["lr"] == lr
    if searched["row"]["learned"]:  # a learned search run is the same run with restarts allowed: reused
        again = runs.run_one(ctx, seed=0, budget=budget, lr=lr, progress=False, score_shift=False)
        assert again["cached"] and again["row"] == searched["row"]
    calls, attempts = [], []
    monkeypatch.setattr(runs, "learned", lambda history, ratio, **kw: (calls.append(ratio), len(calls) > 1)[1])
    from embedtune import engine

    real_train = engine.train

    def recorded_train(model, **kwargs):
        result = real_train(model, **kwargs)
        attempts.append((kwargs["config"].lr, result.best_val_score))
        return result

    monkeypatch.setattr(engine, "train", recorded_train)
    out = runs.run_one(ctx, seed=1, budget=budget, lr=lr, progress=False, score_shift=False)
    row = out["row"]
    assert row["lr_restarts"] == 1 and row["lr_searched"] == lr
    assert [a[0] for a in attempts] == [pytest.approx(lr), pytest.approx(lr / ft.lr_step)]
    # the attempt kept is the one with the higher selection score (a tie keeps the first)
    kept = attempts[1] if attempts[1][1] > attempts[0][1] else attempts[0]
    assert row["lr"] == pytest.approx(kept[0]) and row["val_score"] == pytest.approx(kept[1])
    assert row["kept_attempt"] == attempts.index(kept) and row["learned"] is (kept is attempts[1])
    # finished: no resume state is left under checkpoints/, the record is in the store
    assert not list((TaskPaths(root, "toytext").checkpoints / "full").rglob("state.pt"))
    assert list((root / "runs" / "toytext" / "full" / "final").glob(f"s1_b{budget}_*.json"))


def test_still_improving_needs_a_last_round_gain_beyond_the_selection_noise() -> None:
    from embedtune.stopping import still_improving

    def rounds(*scores: float) -> list[dict[str, float]]:
        return [{"val_metric": s, "val_se": 0.02} for s in scores]

    assert not still_improving(rounds(0.50, 0.51))  # inside the noise
    assert still_improving(rounds(0.50, 0.53))
    assert not still_improving(rounds(0.50, 0.60, 0.59))  # the best was earlier
    assert not still_improving(rounds(0.50))  # one round: nothing to compare


def test_a_run_that_ends_below_its_start_did_not_learn_and_a_tie_is_not_a_failure() -> None:
    from embedtune.outputs import learned

    falling = [{"train_loss": 1.0}, {"train_loss": 0.5}]
    assert learned(falling, 0.8, start_score=0.70, best_score=0.72)
    assert learned(falling, 0.8, start_score=0.70, best_score=0.70)  # a probe head at its ceiling: a tie
    assert not learned(falling, 0.8, start_score=0.70, best_score=0.25)  # wrecked the start (lp_ft at a high rate)
    assert not learned([{"train_loss": 1.0}, {"train_loss": 0.95}], 0.8, start_score=0.5, best_score=0.9)
    assert learned(falling, 0.8, start_score=float("nan"), best_score=0.1)  # no start score: the loss decides


def test_the_search_ranks_rates_that_wrecked_their_start_last_and_goes_below_the_grid_when_all_did() -> None:
    from embedtune.stages.search import search_rates

    def runs_of(learns: dict[float, bool], scores: dict[float, float]):
        calls = []

        def train(lr: float) -> dict:  # "learns": ends above its start (0.3); else below it
            calls.append(lr)
            learned = learns.get(lr, False)
            return {"row": {"val_score": scores.get(lr, 0.5 if learned else 0.2), "start_val_score": 0.3}}
        return train, calls

    # a rate that ended below its start loses to one that did not, whatever their scores
    train, calls = runs_of({1e-4: True, 3e-4: False}, {1e-4: 0.6, 3e-4: 0.25})
    found = search_rates(train, (1e-4, 3e-4), step=3.0, extensions=0, below=2)["found"]
    assert found["chosen"] == 1e-4 and calls == [1e-4, 3e-4]
    # every grid rate failed: the search goes on below, ÷3 at a time, until a rate learns (each rate trains once)
    train, calls = runs_of({1e-4 / 9: True}, {})
    out = search_rates(train, (1e-4, 3e-4), step=3.0, extensions=0, below=2)
    assert out["found"]["chosen"] == pytest.approx(1e-4 / 9)
    assert sorted(calls) == sorted([1e-4, 3e-4, 1e-4 / 3, 1e-4 / 9]) and len(calls) == len(set(calls))
    # none ever learns: at most `below` rates beyond the grid, the smallest picked
    train, calls = runs_of({}, {})
    out = search_rates(train, (1e-4, 3e-4), step=3.0, extensions=0, below=1)
    assert len(calls) == 3 and out["found"]["chosen"] == pytest.approx(1e-4 / 3)
