"""Data layer: real loaders via the data root, generated files, splits, budgets and error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedtune.data import budget_subsets, load_prepared, prepare_task, stratified_order
from embedtune.datatypes import DataError, Split, group_split
from embedtune.loaders import load_raw
from embedtune.params import ParamsError, TaskParams

from .conftest import make_images, make_text_rows


def test_medmnist_real_counts_and_checksum(data_root, tmp_path) -> None:
    card = prepare_task("medical", TaskParams(source="medmnist", main_metric="auroc", name="pneumoniamnist"),
                        data_root=data_root, out_dir=tmp_path)
    assert card["source_counts"] == {"train": 4708, "val": 524, "test": 624}
    assert card["md5"] == "28209eda62fecd6e6a2d98b1501bb15f"
    assert card["label_counts"]["test"] == {"normal": 234, "pneumonia": 390}
    assert card["counts"]["train"] == 4708 - card["duplicates_removed"]["train"]
    data = load_prepared(tmp_path)
    assert data.splits["train"].x.dtype == np.uint8 and data.splits["train"].x.shape[1:] == (28, 28)


def test_breastmnist_second_config(data_root) -> None:
    data = load_raw("medical", TaskParams(source="medmnist", main_metric="auroc", name="breastmnist"), data_root)
    assert {s: len(p) for s, p in data.splits.items()} == {"train": 546, "val": 78, "test": 156}


def test_lexglue_unfair_tos_real(data_root) -> None:
    data = load_raw("legal", TaskParams(source="lexglue", main_metric="macro_f1", name="unfair_tos"), data_root)
    assert {s: len(p) for s, p in data.splits.items()} == {"train": 5532, "val": 2275, "test": 1607}
    assert data.multi_label and data.splits["train"].y.shape[1] == 8
    none_share = (data.splits["train"].y.sum(1) == 0).mean()
    assert 0.8 < none_share < 0.95  # most sentences carry no unfair-clause label


def test_sentiment_split_keeps_movies_apart() -> None:
    data = load_raw("sentiment", TaskParams(source="rotten_tomatoes", main_metric="accuracy"), Path("."))
    movies = {s: set(p.groups) for s, p in data.splits.items()}
    assert not (movies["train"] & movies["val"]) and not (movies["train"] & movies["test"])
    assert not (movies["val"] & movies["test"])
    sizes = np.array([len(p) for p in data.splits.values()]) / sum(len(p) for p in data.splits.values())
    assert np.allclose(sizes, [0.8, 0.1, 0.1], atol=0.02)
    texts = [t for p in data.splits.values() for t in p.x]
    assert len(texts) == len(set(texts))  # duplicate snippets dropped
    assert set(np.unique(data.splits["train"].y)) == {0, 1}


def test_group_split_never_shares_a_group() -> None:
    groups = np.repeat(np.arange(50), 4).astype(str)
    whole = Split(x=list(range(200)), y=np.zeros(200, np.int64), groups=groups)
    parts = group_split(whole, fractions=(0.8, 0.1, 0.1), seed=3)
    seen = [set(p.groups) for p in parts.values()]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


def test_byo_table_csv_jsonl_parquet(tmp_path) -> None:
    frame = make_text_rows(90)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "a.parquet")
    for name in ("a.csv", "a.jsonl", "a.parquet"):
        data = load_raw("byo", TaskParams(source="table", path=name, main_metric="accuracy", group_column="movie"),
                        tmp_path)
        assert data.label_names == ["neg", "pos"]
        assert sum(len(p) for p in data.splits.values()) == 90


def test_byo_multilabel_columns_and_split_column(tmp_path) -> None:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(30)], "a": [i % 2 for i in range(30)],
                          "b": [(i // 2) % 2 for i in range(30)], "split": ["train"] * 20 + ["validation"] * 5 + ["test"] * 5})
    frame.to_csv(tmp_path / "m.csv", index=False)
    data = load_raw("byo", TaskParams(source="table", path="m.csv", label_column="a,b", main_metric="macro_f1"), tmp_path)
    assert data.multi_label and data.splits["train"].y.shape == (20, 2) and len(data.splits["val"]) == 5


def test_byo_npz_and_image_folder(tmp_path) -> None:
    from PIL import Image

    x, y = make_images(40)
    np.savez(tmp_path / "imgs.npz", images=x, labels=y)
    data = load_raw("img", TaskParams(source="npz", path="imgs.npz", main_metric="auroc"), tmp_path)
    assert data.kind == "image" and sum(len(p) for p in data.splits.values()) == 40
    for i, (im, label) in enumerate(zip(x, y)):
        folder = tmp_path / "folder" / ("cat" if label else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(folder / f"{i}.png")
    data = load_raw("img", TaskParams(source="image_folder", path="folder", main_metric="auroc"), tmp_path)
    assert data.label_names == ["cat", "dog"] and data.splits["train"].x.shape[-1] == 3


def test_lexglue_format_from_generated_files(tmp_path) -> None:
    folder = tmp_path / "lexglue" / "unfair_tos"
    folder.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        pd.DataFrame({"text": ["a b", "c d", "e f"], "labels": ["[]", "[3 2 1]", "[7]"]}).to_csv(folder / f"{split}.csv", index=False)
    data = load_raw("legal", TaskParams(source="lexglue", main_metric="macro_f1"), tmp_path)
    assert data.splits["test"].y.tolist()[1] == [0, 1, 1, 1, 0, 0, 0, 0]


def test_cross_split_duplicates_are_counted_and_removed(tmp_path) -> None:
    frame = pd.DataFrame({"text": ["same"] * 2 + [f"u{i}" for i in range(28)],
                          "label": [0, 1] * 15, "split": ["train", "test"] + ["train"] * 18 + ["val"] * 5 + ["test"] * 5})
    frame.to_csv(tmp_path / "d.csv", index=False)
    card = prepare_task("d", TaskParams(source="table", path="d.csv", main_metric="accuracy"), data_root=tmp_path,
                        out_dir=tmp_path / "out")
    assert card["cross_split_duplicates"] == 1 and card["duplicates_removed"]["train"] == 1
    assert card["counts"] == {"train": 18, "val": 5, "test": 6}


def test_nested_stratified_budgets_identical_across_calls() -> None:
    y = np.array([0] * 300 + [1] * 100 + [2] * 40)
    subsets = budget_subsets(y, sizes=(16, 64, 256), seeds=(0, 1))
    again = budget_subsets(y, sizes=(16, 64, 256), seeds=(0, 1))
    assert subsets == again
    for seed in ("0", "1"):
        s16, s64, s256 = (set(subsets[seed][k]) for k in ("16", "64", "256"))
        assert s16 <= s64 <= s256  # nested
        for idx in subsets[seed].values():
            share = np.bincount(y[idx], minlength=3) / len(idx)
            assert np.allclose(share, [300 / 440, 100 / 440, 40 / 440], atol=0.08)  # stratified
    assert subsets["0"]["64"] != subsets["1"]["64"]


def test_multilabel_budgets_keep_every_label() -> None:
    rng = np.random.default_rng(0)
    y = np.zeros((2000, 8), np.int8)
    for j in range(8):
        y[rng.choice(2000, size=10 + 5 * j, replace=False), j] = 1  # rare labels: 10..45 positives
    order = stratified_order(y, seed=0, limit=64)
    assert (y[order[:16]].sum(0) >= 1).all()


def test_budget_errors_are_clear() -> None:
    y = np.array([0] * 20 + [1] * 20)
    with pytest.raises(ParamsError, match="larger than the train split"):
        budget_subsets(y, sizes=(64,), seeds=(0,))
    with pytest.raises(ParamsError, match="smaller than the number of classes"):
        budget_subsets(np.arange(40) % 3, sizes=(2,), seeds=(0,))


def test_missing_and_corrupted_files_name_the_file(tmp_path) -> None:
    with pytest.raises(DataError, match=r"medmnist/breastmnist\.npz not found"):
        load_raw("medical", TaskParams(source="medmnist", name="breastmnist", main_metric="auroc"), tmp_path)
    (tmp_path / "medmnist").mkdir()
    (tmp_path / "medmnist" / "breastmnist.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"md5 .* does not match the published 750601b1f35ba3300ea97c75c52ff8f6"):
        load_raw("medical", TaskParams(source="medmnist", name="breastmnist", main_metric="auroc"), tmp_path)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04truncated")
    with pytest.raises(DataError, match=r"bad\.npz is not a readable \.npz"):
        load_raw("x", TaskParams(source="npz", path="bad.npz", main_metric="auroc"), tmp_path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        load_raw("x", TaskParams(source="table", path="empty.csv", main_metric="accuracy"), tmp_path)
    make_text_rows(20).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"column\(s\) \['sentiment'\] not found; columns present"):
        load_raw("x", TaskParams(source="table", path="t.csv", label_column="sentiment", main_metric="accuracy"), tmp_path)
    with pytest.raises(DataError, match="does not match the declared"):
        load_raw("x", TaskParams(source="table", path="t.csv", md5="0" * 32, main_metric="accuracy"), tmp_path)


def test_lexglue_label_format_error(tmp_path) -> None:
    folder = tmp_path / "lexglue" / "unfair_tos"
    folder.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        pd.DataFrame({"text": ["a"], "labels": ["3,2"]}).to_csv(folder / f"{split}.csv", index=False)
    with pytest.raises(DataError, match=r"is not a bracketed list"):
        load_raw("legal", TaskParams(source="lexglue", main_metric="macro_f1"), tmp_path)


def test_gpu_profile_loaders_on_tiny_files(tmp_path) -> None:
    """IMDB / SST-2 (local CSV mirror, val carved from train) and LexGLUE LEDGAR (single-label CSV)."""
    for source in ("imdb", "sst2"):
        folder = tmp_path / source
        folder.mkdir()
        frame = make_text_rows(60).assign(label=lambda f: (f["label"] == "pos").astype(int))
        frame[["text", "label"]].iloc[:40].to_csv(folder / "train.csv", index=False)
        frame[["text", "label"]].iloc[40:].to_csv(folder / "test.csv", index=False)
        data = load_raw(source, TaskParams(source=source, main_metric="accuracy"), tmp_path)
        assert {s: len(p) for s, p in data.splits.items()}["test"] == 20
        assert len(data.splits["train"]) + len(data.splits["val"]) == 40 and len(data.splits["val"]) >= 2
    folder = tmp_path / "lexglue" / "ledgar"
    folder.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        pd.DataFrame({"text": [f"clause {i}" for i in range(6)], "label": [0, 1, 2, 0, 1, 2]}).to_csv(
            folder / f"{split}.csv", index=False)
    data = load_raw("legal", TaskParams(source="lexglue", name="ledgar", main_metric="macro_f1"), tmp_path)
    assert not data.multi_label and data.n_labels == 3 and data.splits["val"].y.tolist() == [0, 1, 2, 0, 1, 2]


def test_dermamnist_has_a_published_checksum(tmp_path) -> None:
    with pytest.raises(DataError, match=r"dermamnist\.npz not found"):
        load_raw("medical", TaskParams(source="medmnist", name="dermamnist", main_metric="auroc"), tmp_path)


@pytest.mark.parametrize("layout", ["grey", "hwc", "chw", "chw1"])
def test_npz_images_load_channels_last_in_every_layout(tmp_path, layout) -> None:
    from embedtune.loaders import load_raw

    rng = np.random.default_rng(0)
    shapes = {"grey": (60, 20, 20), "hwc": (60, 20, 20, 3), "chw": (60, 3, 20, 20), "chw1": (60, 1, 20, 20)}
    images = rng.integers(0, 255, shapes[layout]).astype(np.uint8)
    np.savez(tmp_path / "imgs.npz", images=images, labels=rng.integers(0, 5, 60))
    data = load_raw("rgb", TaskParams(source="npz", path="imgs.npz", main_metric="accuracy"), tmp_path)
    x = data.splits["train"].x
    assert x.shape[1:3] == (20, 20) and (x.ndim == 3 or x.shape[3] == 3), x.shape
