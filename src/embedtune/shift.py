"""Shift test sets: data drawn unlike the training data, scored beside the clean test split, never selected on.

Kinds (a task lists them under ``shift`` in params.yaml; default: its kind's perturbation):
- ``uci_sentences``: real new sentences (UCI "Sentiment Labelled Sentences": Amazon phone reviews, IMDb,
  Yelp; ``<data_root>/uci_sentences/sentences.csv``), one set per source; labels mapped onto the task's by
  ``label_map``.
- ``text_perturb``: seeded, label-preserving perturbations of the clean test rows (CheckList-style
  invariance): per word, with probability ``strength``, a typo (swap, drop or repeat a letter), a case
  flip, or punctuation added/removed; company and service names are swapped for others everywhere.
- ``image_corrupt``: the 13 MedMNIST-C corruptions defined for PneumoniaMNIST (Di Salvo et al., 2024) at
  the registry's severity parameters, applied to the 28 px test images (`CORRUPTIONS`). MedMNIST-C applies
  them to the 224 px release: pixel-wise corruptions (noise, brightness, contrast, gamma) and the relative
  pixelate factor keep their meaning at 28 px; JPEG's 8×8 blocks and the blur kernels (in pixels) cover 8×
  more of the image here, so those two are stronger than at 224 px.

Every set keeps the rows of a seeded stratified subset of the test split (``shift.max_rows``), the same rows
at every severity, so drops are paired. Sets are built once per task by the ``shift`` stage
(``data/shift/<task>/``) and read by every scoring stage.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_path, read_json, write_json

COMPANY_NAMES = ("Google", "Facebook", "Amazon", "Apple", "Microsoft", "Spotify", "Netflix", "Uber", "Airbnb",
                 "Dropbox", "Instagram", "Twitter", "Skype", "YouTube", "LinkedIn", "Tinder", "Yahoo", "Zynga",
                 "Evernote", "Pinterest", "Snapchat", "WhatsApp", "Vimeo", "Viber", "Deliveroo", "Endomondo",
                 "Headspace", "Mozilla", "Oculus", "Rovio", "Supercell", "TripAdvisor", "Vivino", "Fitbit")

# name → (function, severity parameters 1..5) from medmnistc/corruptions/registry.py, 'pneumoniamnist'
CORRUPTIONS: dict[str, tuple[str, tuple[float, ...]]] = {
    "pixelate": ("pixelate", (0.8, 0.7, 0.6, 0.5, 0.40)),
    "jpeg_compression": ("jpeg", (50, 30, 15, 10, 7)),
    "gaussian_noise": ("gaussian_noise", (0.04, 0.05, 0.06, 0.07, 0.08)),
    "speckle_noise": ("speckle_noise", (0.05, 0.07, 0.10, 0.15, 0.20)),
    "impulse_noise": ("impulse_noise", (0.005, 0.01, 0.013, 0.017, 0.02)),
    "shot_noise": ("shot_noise", (300, 200, 150, 100, 80)),
    "gaussian_blur": ("gaussian_blur", (3, 5, 7, 9, 11)),
    "brightness_up": ("brightness", (1.1, 1.2, 1.3, 1.4, 1.5)),
    "brightness_down": ("brightness", (0.9, 0.8, 0.7, 0.6, 0.5)),
    "contrast_up": ("contrast", (1.1, 1.2, 1.3, 1.4, 1.6)),
    "contrast_down": ("contrast", (0.9, 0.8, 0.7, 0.6, 0.4)),
    "gamma_corr_up": ("gamma", (1.1, 1.2, 1.3, 1.4, 1.6)),
    "gamma_corr_down": ("gamma", (0.9, 0.8, 0.7, 0.6, 0.4)),
}


@dataclass
class ShiftSet:
    name: str  # unique, e.g. "imdb", "text_perturb@0.15", "gaussian_blur@3"
    shift: str  # source or corruption family: "imdb", "text_perturb", "gaussian_blur"
    severity: float  # 0 for real new data; strength or severity level otherwise
    x: Any  # list[str] or uint8 (N, H, W) / (N, H, W, C)
    y: np.ndarray
    test_rows: np.ndarray | None = None  # graded sets: indices of the clean test rows they perturb


# ------------------------------------------------------------------------------------------------ text


def perturb_text(text: str, *, strength: float, rng: np.random.Generator) -> str:
    """One label-preserving perturbation of `text` (module docstring); `strength` in [0, 1]."""
    for name in COMPANY_NAMES:
        if name in text:
            others = [n for n in COMPANY_NAMES if n != name]
            text = re.sub(rf"\b{re.escape(name)}\b", others[int(rng.integers(len(others)))], text)
    words = text.split(" ")
    out = []
    for word in words:
        if word and rng.random() < strength:
            op = int(rng.integers(3))
            if op == 0 and sum(c.isalpha() for c in word) >= 3:
                word = _typo(word, rng)
            elif op == 1 or op == 0:
                word = word.upper() if word.islower() else word.lower()
            else:
                word = word[:-1] if word[-1] in ".,;:!?" else word + ",.!?;"[int(rng.integers(5))]
        out.append(word)
    return " ".join(out)


def _typo(word: str, rng: np.random.Generator) -> str:
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    i = letters[int(rng.integers(len(letters) - 1))]
    kind = int(rng.integers(3))
    if kind == 0 and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def perturb_texts(texts: list[str], *, strength: float, seed: int) -> list[str]:
    rng = np.random.default_rng([seed, int(round(strength * 1000))])
    return [perturb_text(t, strength=strength, rng=rng) for t in texts]


def load_uci_sentences(data_root: Path, *, label_map: dict[str, str], label_names: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
    """{source: (texts, task label ids)} from the UCI sentences CSV; labels mapped by `label_map`."""
    import pandas as pd

    path = Path(data_root) / "uci_sentences" / "sentences.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; the uci_sentences shift set needs the data mirror "
                                "(data_root in params.yaml)")
    frame = pd.read_csv(path)
    missing = {"text", "label", "domain"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected text,label,domain")
    if not label_map:
        raise ValueError("tasks.<task>.label_map is empty; uci_sentences needs it, e.g. {'0': negative, '1': positive}")
    unknown = sorted(set(label_map.values()) - set(label_names))
    if unknown:
        raise ValueError(f"tasks.<task>.label_map: {unknown} are not labels of the task; allowed: {label_names}")
    out = {}
    for source, group in frame.groupby("domain", sort=True):
        labels = [label_map.get(str(v)) for v in group["label"]]
        if any(v is None for v in labels):
            raise ValueError(f"tasks.<task>.label_map: no entry for labels {sorted(set(map(str, group['label'])) - set(label_map))}")
        out[str(source)] = ([str(t) for t in group["text"]], np.asarray([label_names.index(v) for v in labels]))
    return out


# ------------------------------------------------------------------------------------------------ images


def corrupt(images: np.ndarray, name: str, severity: int, *, seed: int) -> np.ndarray:
    """MedMNIST-C corruption `name` at `severity` (1..5) of uint8 images, grey (N, H, W) or colour (N, H, W, 3);
    seeded; the shape is kept."""
    if name not in CORRUPTIONS:
        raise ValueError(f"corruption: bad value {name!r}; allowed values: {sorted(CORRUPTIONS)}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity: bad value {severity}; allowed values: 1..5")
    func, levels = CORRUPTIONS[name]
    c = levels[severity - 1]
    rng = np.random.default_rng([seed, list(CORRUPTIONS).index(name), severity])
    return np.stack([_CORRUPT[func](np.asarray(img, np.uint8), c, rng) for img in images]).astype(np.uint8)


def _to_unit(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) / 255.0


def _from_unit(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)  # truncation, as MedMNIST-C


def _pixelate(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    pil = Image.fromarray(img)
    w, h = pil.size
    small = pil.resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX))


def _jpeg(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, "JPEG", quality=int(c))
    return np.asarray(Image.open(buffer))


def _gaussian_noise(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return _from_unit(_to_unit(img) + rng.normal(size=img.shape, scale=c))


def _speckle_noise(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    x = _to_unit(img)
    return _from_unit(x + x * rng.normal(size=img.shape, scale=c))


def _impulse_noise(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper on a fraction `c` of pixels, half each (scikit-image's ``random_noise(mode='s&p')``)."""
    x = _to_unit(img)
    hit = rng.random(img.shape) < c
    salt = rng.random(img.shape) < 0.5
    x[hit & salt], x[hit & ~salt] = 1.0, 0.0
    return _from_unit(x)


def _shot_noise(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return _from_unit(rng.poisson(_to_unit(img) * c) / c)


def _gaussian_blur(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """torchvision's ``gaussian_blur(kernel_size=c)``: σ = 0.3·((k−1)/2 − 1) + 0.8, reflect padding, rounded."""
    k = int(c)
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    x = np.linspace(-(k - 1) / 2, (k - 1) / 2, k)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    pad = k // 2
    # spatial axes only: an RGB image (H, W, 3) keeps its 3 channels
    out = np.pad(img.astype(np.float32), [(pad, pad), (pad, pad)] + [(0, 0)] * (img.ndim - 2), mode="reflect")
    out = np.apply_along_axis(lambda r: np.convolve(r, kernel.astype(np.float32), mode="valid"), 0, out)
    out = np.apply_along_axis(lambda r: np.convolve(r, kernel.astype(np.float32), mode="valid"), 1, out)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _brightness(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageEnhance

    return np.asarray(ImageEnhance.Brightness(Image.fromarray(img)).enhance(c))


def _contrast(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageEnhance

    return np.asarray(ImageEnhance.Contrast(Image.fromarray(img)).enhance(c))


def _gamma(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """torchvision's ``adjust_gamma`` on a PIL image (gain 1): a 256-entry lookup table."""
    table = np.asarray([int((255 + 1 - 1e-3) * pow(v / 255.0, c)) for v in range(256)], np.int64)
    return np.clip(table[img], 0, 255).astype(np.uint8)


_CORRUPT = {"pixelate": _pixelate, "jpeg": _jpeg, "gaussian_noise": _gaussian_noise, "speckle_noise": _speckle_noise,
            "impulse_noise": _impulse_noise, "shot_noise": _shot_noise, "gaussian_blur": _gaussian_blur,
            "brightness": _brightness, "contrast": _contrast, "gamma": _gamma}


def psnr(clean: np.ndarray, other: np.ndarray) -> float:
    mse = float(np.mean((clean.astype(np.float64) - other.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


# ------------------------------------------------------------------------------------------------ sets


def build_shift_sets(kinds: tuple[str, ...], *, test_x: Any, test_y: np.ndarray, data_root: Path,
                     label_map: dict[str, str], label_names: list[str], text_strengths: tuple[float, ...],
                     severities: tuple[int, ...], max_rows: int | None, seed: int) -> list[ShiftSet]:
    """Every shift set of a task (module docstring), each capped to `max_rows` stratified rows."""
    from .data import stratified_order

    def cap(y: np.ndarray) -> np.ndarray:
        if max_rows is None or len(y) <= max_rows:
            return np.arange(len(y))
        return np.sort(stratified_order(y, seed=seed, limit=max_rows)[:max_rows])

    base = cap(test_y)
    base_x = [test_x[i] for i in base] if isinstance(test_x, list) else test_x[base]
    base_y = test_y[base]
    sets: list[ShiftSet] = []
    for kind in kinds:
        if kind == "uci_sentences":
            for source, (texts, y) in load_uci_sentences(data_root, label_map=label_map,
                                                         label_names=label_names).items():
                keep = cap(y)
                sets.append(ShiftSet(source, source, 0.0, [texts[i] for i in keep], y[keep]))
        elif kind == "text_perturb":
            if not isinstance(base_x, list):
                raise ValueError("shift text_perturb needs a text task; use image_corrupt for images")
            for strength in text_strengths:
                sets.append(ShiftSet(f"text_perturb@{strength:g}", "text_perturb", float(strength),
                                     perturb_texts(base_x, strength=strength, seed=seed), base_y, base))
        elif kind == "image_corrupt":
            if isinstance(base_x, list):
                raise ValueError("shift image_corrupt needs an image task; use text_perturb for text")
            for name in CORRUPTIONS:
                for severity in severities:
                    sets.append(ShiftSet(f"{name}@{severity}", name, float(severity),
                                         corrupt(base_x, name, severity, seed=seed), base_y, base))
        else:
            raise ValueError(f"shift: bad value {kind!r}; allowed values: ['image_corrupt', 'text_perturb', "
                             "'uci_sentences']")
    return sets


def write_shift_sets(sets: list[ShiftSet], out_dir: Path) -> None:
    """One index (sets.json) and one file per set (text: JSON; images: npz), all written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = []
    for i, s in enumerate(sets):
        entry = {"name": s.name, "shift": s.shift, "severity": s.severity, "rows": len(s.y)}
        if s.test_rows is not None:  # graded sets: which clean test rows they were built from
            entry["test_rows"] = np.asarray(s.test_rows).tolist()
        if isinstance(s.x, list):
            entry["file"] = f"set{i:03d}.json"
            write_json(out_dir / entry["file"], {"x": s.x, "y": np.asarray(s.y).tolist()})
        else:
            entry["file"] = f"set{i:03d}.npz"
            with atomic_path(out_dir / entry["file"]) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, x=s.x, y=s.y)
        index.append(entry)
    write_json(out_dir / "sets.json", {"sets": index})


def read_shift_sets(out_dir: Path) -> list[ShiftSet]:
    index_path = out_dir / "sets.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found; run the shift stage first: dvc repro shift")
    sets = []
    for entry in read_json(index_path)["sets"]:
        path = out_dir / entry["file"]
        if path.suffix == ".json":
            raw = read_json(path)
            x, y = list(raw["x"]), np.asarray(raw["y"])
        else:
            with np.load(path) as npz:
                x, y = npz["x"], npz["y"]
        rows = entry.get("test_rows")
        sets.append(ShiftSet(entry["name"], entry["shift"], float(entry["severity"]), x, y,
                             None if rows is None else np.asarray(rows, np.int64)))
    return sets


def default_kinds(kind: str) -> tuple[str, ...]:
    return ("text_perturb",) if kind == "text" else ("image_corrupt",)
