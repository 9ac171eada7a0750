"""The one registry of methods and metrics: every list of them elsewhere (params validation, stage
outputs, comparison order, figure colours, dvc.yaml's templated paths) is derived from here.

Methods are ordered by cost to build, cheapest first (the order tables and the decision rule read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Method:
    name: str
    family: Literal["probe", "tuned"]  # "probe": the probe stage fits it on cached features; "tuned": trains
    label: str  # what a reader sees
    color: str  # one colour per method in every figure
    marker: str  # one matplotlib marker per method in every figure (told apart without colour)


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    single_label: bool  # reported for single-label tasks
    multi_label: bool  # reported for multi-label tasks
    main: bool  # may be a task's main_metric (selection and comparison)


METHODS: tuple[Method, ...] = (
    Method("classic", "probe", "TF-IDF / raw pixels + logistic regression", "#7f7f7f", "s"),
    Method("probe", "probe", "linear probe on frozen embeddings", "#1f77b4", "o"),
    Method("layer_probe", "probe", "linear head on every block's features (group lasso over blocks)", "#17becf", "D"),
    Method("partial", "tuned", "top blocks fine-tuned", "#ff7f0e", "^"),
    Method("lora", "tuned", "LoRA adapters", "#2ca02c", "v"),
    Method("lp_ft", "tuned", "linear probe, then full fine-tuning", "#9467bd", "P"),
    Method("full", "tuned", "full fine-tuning", "#d62728", "X"),
)
METRICS: tuple[Metric, ...] = (
    Metric("accuracy", True, True, False, True),
    Metric("macro_f1", True, True, True, True),
    Metric("balanced_accuracy", True, True, False, True),
    Metric("auroc", True, True, False, True),
    Metric("ece", False, True, False, False),
    Metric("micro_f1", True, False, True, True),
)

METHOD_ORDER: tuple[str, ...] = tuple(m.name for m in METHODS)
# the tuned methods in the order params.yaml's default `methods` lists them
TUNED_METHODS: tuple[str, ...] = ("full", "lp_ft", "lora", "partial")
COLORS: dict[str, str] = {m.name: m.color for m in METHODS}
MARKERS: dict[str, str] = {m.name: m.marker for m in METHODS}
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
MAIN_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.main)
assert set(TUNED_METHODS) == {m.name for m in METHODS if m.family == "tuned"}


def metric_names(multi_label: bool) -> tuple[str, ...]:
    """The metrics recorded per run for a single- or multi-label task."""
    return tuple(m.name for m in METRICS if (m.multi_label if multi_label else m.single_label))

