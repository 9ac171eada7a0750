"""Load and validate ``params.yaml`` into typed, frozen objects.

Every key is checked on load: an unknown key, a value of the wrong type or a name outside its allowed
set stops with a :class:`ParamsError` that names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .registry import MAIN_METRICS, TUNED_METHODS

TASK_NAMES = ("sentiment", "medical", "legal")
METHODS = TUNED_METHODS  # the tuned methods (registry.py); classic and probe always run
SHIFTS = ("uci_sentences", "text_perturb", "image_corrupt")
PROFILES = ("smoke", "cpu", "gpu")
SOURCES = ("rotten_tomatoes", "medmnist", "lexglue", "imdb", "sst2", "table", "npz", "image_folder")
METRICS = MAIN_METRICS


class ParamsError(ValueError):
    """A params file or a parameter value is invalid; the message names the key and the fix."""


@dataclass(frozen=True)
class TaskParams:
    """One classification task: where its data comes from and how it is scored."""

    source: Literal["rotten_tomatoes", "medmnist", "lexglue", "imdb", "sst2", "table", "npz", "image_folder"]
    main_metric: Literal[MAIN_METRICS]
    name: str | None = None  # dataset config (pneumoniamnist, unfair_tos, ledgar, ...)
    path: str | None = None  # bring-your-own file or folder, relative to data_root unless absolute
    kind: Literal["text", "image"] | None = None  # inferred from source when omitted
    text_column: str = "text"
    label_column: str = "label"  # comma-separated names → multi-label with one 0/1 column each
    group_column: str | None = None  # keep groups (e.g. movie, author) within one split
    multi_label: bool = False
    md5: str | None = None  # expected checksum of a bring-your-own file
    encoding: str = "utf-8"  # text encoding of a bring-your-own table (cp1252 / latin-1 for many spreadsheets)
    # shift test sets scored beside the clean test split (shift.py); never used for selection.
    # None = the default for the task's kind: text → text_perturb, image → image_corrupt
    shift: tuple[Literal["uci_sentences", "text_perturb", "image_corrupt"], ...] | None = None
    label_map: dict[str, str] = field(default_factory=dict)  # shift-set label → task label (uci_sentences)


@dataclass(frozen=True)
class DataParams:
    max_train: int | None = None  # cap the train split (smoke runs); None = all
    max_eval: int | None = None  # cap val and test splits (smoke runs); None = all
    # the selection rows: every method (classic, probe, each tuned one) picks its hyperparameters, stopping
    # point and thresholds on these same validation rows (a seeded stratified subset); None = whole split
    max_val: int | None = None


@dataclass(frozen=True)
class BudgetParams:
    sizes: tuple[int | Literal["all"], ...] = (16, 64)  # labelled train examples; "all" = whole train split
    seeds: tuple[int, ...] = (0,)
    # extra budgets for the probe and the classic floor only (cheap on cached features)
    probe_only_sizes: tuple[int | Literal["all"], ...] = ()
    # budgets every method runs, the tuned methods with the first seed only (the probe and classic with all
    # seeds); a single-seed interval comes from resampling test examples
    single_seed_sizes: tuple[int | Literal["all"], ...] = ()
    # seeds the tuned methods run at a single-seed size (the first n of `seeds`); unlisted sizes: 1
    seeds_at: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbedParams:
    text_backbone: str = "pkg:all-minilm-l6-v2"
    image_backbone: str = "pkg:efficientnet-lite0"
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = 128  # tokens
    image_size: int = 64  # pixels, square
    batch_size: int = 64
    task_backbones: dict[str, str] = field(default_factory=dict)  # per-task override, e.g. legal-bert


@dataclass(frozen=True)
class ProbeParams:
    c_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)  # inverse L2 strength, sklearn's convention
    max_iter: int = 300
    grid_extensions: int = 3  # a pick at a grid edge adds a ×10 step beyond it, at most this many times


@dataclass(frozen=True)
class FinetuneParams:
    methods: tuple[Literal[TUNED_METHODS], ...] = METHODS
    batch_size: int = 16
    # learning-rate grid per method, searched on the selection rows at each of search_budgets (seed
    # search_seed); a run uses the pick at the searched budget nearest its own (log scale, ties → smaller);
    # a pick at an edge extends the grid by ×lr_step (search.py). Image tasks scale full / lp_ft / partial
    # grids by image_lr_scale (a CNN takes ~10× a transformer's LR).
    lr_grid: dict[str, tuple[float, ...]] = field(default_factory=lambda: {
        "full": (2e-5, 5e-5, 1e-4), "lp_ft": (1e-5, 2e-5, 5e-5), "lora": (3e-4, 1e-3, 3e-3),
        "partial": (5e-5, 1e-4, 3e-4)})
    lr_step: float = 3.0
    grid_extensions: int = 1
    search_budgets: tuple[int | Literal["all"], ...] = (256,)
    search_seed: int = 0
    image_lr_scale: float = 10.0
    head_lr: float = 1e-3  # head LR for `full`, `lora` and `partial` (random init); lp_ft's head uses the LR
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] | None = None  # module-name suffixes; None = every attention and MLP projection
    partial_blocks: dict[str, int] = field(default_factory=lambda: {"text": 2, "image": 4})  # top k blocks train
    # schedule: a round = clip(max(min_steps, max_epochs × steps per pass), ≤ max_steps) / evals_per_run
    # steps; validation after every round, stop after `patience` rounds without gain or at `max_rounds`
    # rounds, restore the best
    max_epochs: int = 10
    min_steps: int = 100
    max_steps: int | None = None
    evals_per_run: int = 5
    max_rounds: int | None = None  # hard cap on evaluations (≥ evals_per_run); None = evals_per_run
    patience: int = 2
    # what patience watches: the selection metric, the validation loss (smoother on a few hundred rows), or
    # either (a round without a gain in both counts); the kept weights are always the best selection metric's
    # or "noise": a gain is a selection score above every earlier round's by more than its bootstrap standard
    # error on the selection rows (the same signal marks a run still improving)
    stop_on: Literal["metric", "val_loss", "either", "noise"] = "metric"
    # learning-rate shape after warmup: "horizon" decays linearly over the max_rounds horizon; "anneal" decays
    # to lr_floor × peak at the planned length and stays there in extension rounds, no stop before the plan
    # ends and the kept weights come from annealed rounds only (engine docstring); "retrain" runs "horizon"
    # to choose a length (the best round's step), then a fresh run annealed to lr_floor at that length is
    # kept (runs docstring, step 3)
    lr_schedule: Literal["horizon", "anneal", "retrain"] = "horizon"
    lr_floor: float = 0.05  # anneal: fraction of the peak LR at the planned length and after
    lr_restarts: int = 0  # restarts at LR ÷ lr_step of a run that did not learn (outputs.learned); 0 = never
    restart_loss_ratio: float = 0.8  # "did not learn": last round's training loss ≥ this × the first round's
    warmup_frac: float = 0.1
    weight_decay: float = 0.01
    grad_accum: int = 1
    grad_clip: float = 1.0
    length_grouping: int = 1  # text: micro-batches per length-sorted group (engine.length_grouped_order); 1 = off
    class_weights: bool = True
    bn_mode: Literal["frozen", "recalibrate", "train"] = "frozen"  # BatchNorm policy (engine.set_batchnorm_mode)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # training arithmetic (precision.py)
    price_per_device_hour: float = 0.0  # currency units; 0 = no cost estimate


@dataclass(frozen=True)
class ShiftParams:
    max_rows: int | None = None  # rows per shift set (seeded stratified subset); None = all
    text_strengths: tuple[float, ...] = (0.05, 0.15)  # fraction of words perturbed (text_perturb)
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)  # MedMNIST-C severities (image_corrupt)
    seed: int = 0


@dataclass(frozen=True)
class DecisionParams:
    # the decision rule (decision.py): a cheaper method is picked only when its one-sided paired interval
    # against the best shows it at most this many points of the main metric worse
    margin_points: float = 1.0


@dataclass(frozen=True)
class ProfileParams:
    data: DataParams
    budgets: BudgetParams
    embed: EmbedParams
    probe: ProbeParams
    finetune: FinetuneParams
    shift: ShiftParams = field(default_factory=ShiftParams)
    decision: DecisionParams = field(default_factory=DecisionParams)


@dataclass(frozen=True)
class Params:
    profile: str
    data_root: Path
    tasks: dict[str, TaskParams]
    profiles: dict[str, ProfileParams]

    @property
    def scale(self) -> ProfileParams:
        """Settings of the active profile."""
        return self.profiles[self.profile]

    def task(self, name: str) -> TaskParams:
        if name not in self.tasks:
            raise ParamsError(f"unknown task {name!r}; allowed: {sorted(self.tasks)} (declare new ones under 'tasks')")
        return self.tasks[name]

    def backbone_for(self, task: str) -> str:
        """Backbone id used for `task` under the active profile."""
        embed = self.scale.embed
        if task in embed.task_backbones:
            return embed.task_backbones[task]
        return embed.image_backbone if task_kind(self.task(task)) == "image" else embed.text_backbone


def task_kind(task: TaskParams) -> str:
    """'text' or 'image' for a task, inferred from its source when not given."""
    if task.kind:
        return task.kind
    return "image" if task.source in ("medmnist", "npz", "image_folder") else "text"


def is_multi_label(task: TaskParams) -> bool:
    return task.multi_label or task.source == "lexglue" and (task.name or "unfair_tos") == "unfair_tos"


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a type annotation, converting lists to tuples; raise ParamsError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ParamsError as exc:
                errors.append(str(exc))
        raise ParamsError(f"{key}: bad value {value!r}; expected {_describe(annotation)}")
    if origin is Literal:
        if value not in args:
            raise ParamsError(f"{key}: bad value {value!r}; allowed values: {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise ParamsError(f"{key}: bad value {value!r}; expected a non-empty list")
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: bad value {value!r}; expected a mapping")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key)
    if annotation is Path:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: bad value {value!r}; expected a path string")
        return Path(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: bad value {value!r}; expected a number")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: bad value {value!r}; expected an integer")
        return value
    if annotation in (str, bool):
        if not isinstance(value, annotation):
            raise ParamsError(f"{key}: bad value {value!r}; expected {annotation.__name__}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")  # a bug in this module


def _describe(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return " or ".join(getattr(a, "__name__", str(a)) for a in args) + " or null"


def _build(cls: type, raw: Any, key: str) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"{key}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ParamsError(f"{key}: unknown key(s) {unknown}; allowed keys: {sorted(fields)}")
    values = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{sub}: missing required key")
    return cls(**values)


def parse_params(raw: dict[str, Any], *, profile: str | None = None) -> Params:
    """Validate a params mapping; `profile` overrides the file's choice (the CLI's ``--profile``).

    No environment variable changes a result: the profile and the data root come from the file (which DVC
    tracks as params) or from explicit arguments, so DVC re-runs a stage whenever either changes."""
    if not isinstance(raw, dict):
        raise ParamsError("params: the file must hold a mapping at the top level")
    allowed = {"profile", "data_root", "tasks", "methods", "profiles"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ParamsError(f"unknown top-level key(s) {unknown}; allowed keys: {sorted(allowed)}")
    profiles = _coerce(raw.get("profiles", {}), dict[str, ProfileParams], "profiles")
    missing = [p for p in PROFILES if p not in profiles]
    if missing:
        raise ParamsError(f"profiles: missing profile(s) {missing}; every params file defines {list(PROFILES)}")
    chosen = profile or raw.get("profile", "cpu")
    if chosen not in profiles:
        raise ParamsError(f"profile: bad value {chosen!r}; allowed values: {sorted(profiles)}")
    methods = _coerce(raw.get("methods", list(METHODS)), tuple[Literal[TUNED_METHODS], ...], "methods")
    for name in profiles:
        given = ((raw.get("profiles") or {}).get(name) or {}).get("finetune", {}).get("methods")
        if given is not None:
            raise ParamsError(f"profiles.{name}.finetune.methods: declare the tuned methods once, in the top-level "
                              f"'methods' list (dvc.yaml's matrix reads it); remove this key")
    profiles = {name: dataclasses.replace(prof, finetune=dataclasses.replace(prof.finetune, methods=methods))
                for name, prof in profiles.items()}
    tasks = _coerce(raw.get("tasks", {}), dict[str, TaskParams], "tasks")
    if not tasks:
        raise ParamsError("tasks: no task declared; declare at least one (sentiment, medical, legal, ...)")
    for name, prof in profiles.items():
        allowed_at = [str(s) for s in prof.budgets.single_seed_sizes]
        for size, count in prof.budgets.seeds_at.items():
            if size not in allowed_at or not 1 <= count <= len(prof.budgets.seeds):
                raise ParamsError(f"profiles.{name}.budgets.seeds_at: bad entry {size}: {count}; allowed keys: "
                                  f"{allowed_at}, values: 1..{len(prof.budgets.seeds)} (the number of seeds)")
        for size in (*prof.budgets.sizes, *prof.budgets.probe_only_sizes, *prof.budgets.single_seed_sizes):
            if size != "all" and size < 2:
                raise ParamsError(f"profiles.{name}.budgets.sizes: bad value {size}; budgets must be >= 2")
        ft = prof.finetune
        for method, grid in ft.lr_grid.items():
            if method not in METHODS:
                raise ParamsError(f"profiles.{name}.finetune.lr_grid: unknown method {method!r}; allowed: {list(METHODS)}")
            if any(v <= 0 for v in grid):
                raise ParamsError(f"profiles.{name}.finetune.lr_grid.{method}: bad value {list(grid)}; LRs must be > 0")
        missing_grid = [m for m in ft.methods if m not in ft.lr_grid]
        if missing_grid:
            raise ParamsError(f"profiles.{name}.finetune.lr_grid: no grid for method(s) {missing_grid}; "
                              "give each listed method a list of learning rates")
        for kind, k in ft.partial_blocks.items():
            if kind not in ("text", "image") or k < 1:
                raise ParamsError(f"profiles.{name}.finetune.partial_blocks: bad entry {kind}: {k}; allowed keys: "
                                  "['image', 'text'] with values >= 1")
        for key in ("evals_per_run", "patience", "max_epochs"):
            if getattr(ft, key) < 1:
                raise ParamsError(f"profiles.{name}.finetune.{key}: bad value {getattr(ft, key)}; allowed values: "
                                  "integers >= 1")
        if ft.max_rounds is not None and ft.max_rounds < ft.evals_per_run:
            raise ParamsError(f"profiles.{name}.finetune.max_rounds: bad value {ft.max_rounds}; allowed values: "
                              f"null or integers >= evals_per_run ({ft.evals_per_run})")
        if ft.lr_schedule in ("anneal", "retrain") and not 0.0 <= ft.lr_floor <= 0.1:
            raise ParamsError(f"profiles.{name}.finetune.lr_floor: bad value {ft.lr_floor}; allowed values: 0 to 0.1 "
                              "(an annealed round runs at most 10% of the peak learning rate)")
        if not ft.search_budgets:
            raise ParamsError(f"profiles.{name}.finetune.search_budgets: empty; allowed values: a list of budgets "
                              "from budgets.sizes or budgets.single_seed_sizes")
        if ft.lr_restarts < 0:
            raise ParamsError(f"profiles.{name}.finetune.lr_restarts: bad value {ft.lr_restarts}; allowed values: "
                              "integers >= 0")
        if not 0 < ft.restart_loss_ratio < 1:
            raise ParamsError(f"profiles.{name}.finetune.restart_loss_ratio: bad value {ft.restart_loss_ratio}; "
                              "allowed values: numbers between 0 and 1")
        if prof.decision.margin_points < 0:
            raise ParamsError(f"profiles.{name}.decision.margin_points: bad value {prof.decision.margin_points}; "
                              "allowed values: numbers >= 0 (points of the main metric)")
        if ft.lr_step <= 1:
            raise ParamsError(f"profiles.{name}.finetune.lr_step: bad value {ft.lr_step}; allowed values: numbers > 1")
        if prof.finetune.length_grouping < 1:
            raise ParamsError(f"profiles.{name}.finetune.length_grouping: bad value {prof.finetune.length_grouping}; "
                              "allowed values: integers >= 1 (1 = no grouping)")
        for task_name in prof.embed.task_backbones:
            # task-keyed settings are checked for the active profile only: dropping a task from `tasks` needs
            # no edit to another profile (that profile's check runs when it is chosen)
            if task_name not in tasks and name == chosen:
                raise ParamsError(
                    f"profiles.{name}.embed.task_backbones: unknown task {task_name!r}; allowed: {sorted(tasks)}"
                )
    data_root = Path(raw.get("data_root", "data"))
    return Params(profile=chosen, data_root=data_root, tasks=tasks, profiles=profiles)


def load_params(path: str | Path = "params.yaml", *, profile: str | None = None) -> Params:
    """Read and validate `path`. Relative data roots resolve against the params file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} not found; run from the repository root or pass its path")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"params file {path} is not valid YAML: {exc}") from exc
    params = parse_params(raw, profile=profile)
    if not params.data_root.is_absolute():
        params = dataclasses.replace(params, data_root=(path.parent / params.data_root).resolve())
    return params


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ParamsError(f"method: bad value {method!r}; allowed values: {list(METHODS)}")
    return method
