"""Typed, validated parameters: one dataclass per ``params.yaml`` group.

Unknown keys are rejected with a message naming the key, so a typo in ``params.yaml`` or in
``dvc exp run -S`` fails at once instead of being silently ignored.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SOURCES = ("demo", "folder", "kaggle", "tfrecords")
METRICS = ("cosine", "euclidean")


class ParamsError(ValueError):
    """A value in params.yaml is missing, misspelt or out of range."""


def _build(cls, raw: Any, where: str):
    """Build dataclass ``cls`` from mapping ``raw``, recursing into nested dataclasses."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f" (did you mean '{where}.{close[0]}'?)" if close else ""
        raise ParamsError(f"unknown parameter '{where}.{key}'{hint}; valid keys: {', '.join(fields)}")
    values = {}
    for name, value in raw.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING \
            else fields[name].default
        if dataclasses.is_dataclass(default):
            value = _build(type(default), value, f"{where}.{name}")
        values[name] = value
    obj = cls(**values)
    obj.validate(where)
    return obj


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ParamsError(message)


@dataclass(frozen=True)
class DemoParams:
    n_distinct: int = 300
    n_duplicates: int = 60
    n_label_conflicts: int = 5
    seed: int = 0
    n_test: int = 0
    n_cross: int = 0

    def validate(self, where: str) -> None:
        _check(self.n_distinct >= 2, f"{where}.n_distinct must be >= 2, got {self.n_distinct}")
        _check(self.n_test >= 0 and self.n_cross >= 0, f"{where}.n_test and {where}.n_cross must be >= 0")
        _check(self.n_cross == 0 or self.n_test > 0, f"{where}.n_cross needs a test set: set {where}.n_test > 0")
        _check(0 <= self.n_duplicates, f"{where}.n_duplicates must be >= 0, got {self.n_duplicates}")
        _check(0 <= self.n_label_conflicts <= self.n_duplicates,
               f"{where}.n_label_conflicts must be between 0 and n_duplicates, got {self.n_label_conflicts}")


@dataclass(frozen=True)
class FolderParams:
    images: str = "."
    labels_csv: str = ""
    label_map: str = ""

    def validate(self, where: str) -> None:
        pass


@dataclass(frozen=True)
class KaggleParams:
    competition: str = "cassava-leaf-disease-classification"

    def validate(self, where: str) -> None:
        _check(bool(self.competition), f"{where}.competition must name a competition slug")


@dataclass(frozen=True)
class TfrecordsParams:
    pattern: str = "*.tfrec"

    def validate(self, where: str) -> None:
        _check(bool(self.pattern), f"{where}.pattern must be a glob such as '*.tfrec'")


@dataclass(frozen=True)
class SourceParams:
    """Where one set of images comes from: the source and its options (shared by fetch and its sets)."""

    source: str = "folder"
    input: str = "data/raw"
    demo: DemoParams = field(default_factory=DemoParams)
    folder: FolderParams = field(default_factory=FolderParams)
    kaggle: KaggleParams = field(default_factory=KaggleParams)
    tfrecords: TfrecordsParams = field(default_factory=TfrecordsParams)

    def validate(self, where: str) -> None:
        _check(self.source in SOURCES, f"{where}.source must be one of {SOURCES}, got {self.source!r}")


@dataclass(frozen=True)
class SetParams(SourceParams):
    """One named set of ``fetch.sets``: its own source, input folder and labels."""

    name: str = ""

    def validate(self, where: str) -> None:
        _check(bool(self.name) and "/" not in self.name and self.name == self.name.strip(),
               f"{where}.name must be a non-empty set name without '/', got {self.name!r}")
        super().validate(where)


@dataclass(frozen=True)
class FetchParams(SourceParams):
    source: str = "demo"
    set_name: str = "train"
    sets: tuple = ()

    def __post_init__(self):
        if not isinstance(self.sets, (list, tuple)):
            raise ParamsError(f"fetch.sets must be a list of sets, got {self.sets!r}")
        built = tuple(s if isinstance(s, SetParams) else _build(SetParams, s, f"fetch.sets[{i}]")
                      for i, s in enumerate(self.sets))
        object.__setattr__(self, "sets", built)

    def validate(self, where: str) -> None:
        super().validate(where)
        names = [s.name for s in self.sets]
        _check(len(names) == len(set(names)), f"{where}.sets: set names must be unique, got {names}")
        root = Path(self.input).resolve()
        for i, spec in enumerate(self.sets):
            inside = Path(spec.input).resolve()
            _check(spec.source == "demo" or inside == root or root in inside.parents,
                   f"{where}.sets[{i}].input ({spec.input}) must lie under {where}.input ({self.input}), "
                   f"the folder DVC tracks as the fetch stage's dependency")


@dataclass(frozen=True)
class EmbedParams:
    models: tuple = ("efficientnet-lite0",)
    sizes: tuple = (224,)
    weights: str = "imagenet"
    pooling: str = "max"
    grayscale: bool = False
    batch_size: int = 32
    hash: str = "dhash"
    cache: str = ".neardup_cache"

    def __post_init__(self):
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "sizes", tuple(self.sizes))

    def validate(self, where: str) -> None:
        from neardup.models import MODEL_NAMES, POOLINGS

        _check(len(self.models) > 0, f"{where}.models must list at least one model")
        for name in self.models:
            _check(name in MODEL_NAMES, f"{where}.models: unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")
        for size in self.sizes:
            _check(size == "auto" or (isinstance(size, int) and 32 <= size <= 1024),
                   f"{where}.sizes: each size must be 'auto' or an integer in 32..1024, got {size!r}")
        from neardup.hashing import HASH_METHODS

        _check(self.hash == "" or self.hash in HASH_METHODS,
               f"{where}.hash must be '' (none) or one of {HASH_METHODS}, got {self.hash!r}")
        _check(self.pooling in POOLINGS, f"{where}.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        _check(isinstance(self.grayscale, bool), f"{where}.grayscale must be true or false")
        _check(self.batch_size >= 1, f"{where}.batch_size must be >= 1, got {self.batch_size}")
        _check(bool(self.weights), f"{where}.weights must be imagenet, noisy-student, none or a file path")


@dataclass(frozen=True)
class ClusterParams:
    metric: str = "cosine"
    eps: tuple = (0.05, 0.1, 0.15, 0.2)
    min_samples: int = 1
    whiten: float = 0.0
    hash_weight: float = 0.0
    normalize_k: int = 0
    mutual_k: int = 0
    search: str = "auto"
    nprobe: int = 16
    block_size: int = 1024

    def __post_init__(self):
        eps = self.eps if isinstance(self.eps, (list, tuple)) else [self.eps]
        object.__setattr__(self, "eps", tuple(sorted(float(e) for e in eps)))

    def validate(self, where: str) -> None:
        _check(self.metric in METRICS, f"{where}.metric must be one of {METRICS}, got {self.metric!r}")
        _check(len(self.eps) > 0 and all(e > 0 for e in self.eps),
               f"{where}.eps must be a non-empty list of positive numbers, got {list(self.eps)}")
        if self.metric == "cosine":
            _check(max(self.eps) <= 2.0, f"{where}.eps: cosine distances lie in [0, 2], got {max(self.eps)}")
        _check(self.min_samples >= 1, f"{where}.min_samples must be >= 1, got {self.min_samples}")
        _check(self.whiten >= 0, f"{where}.whiten must be >= 0 (0: off), got {self.whiten}")
        _check(0 <= self.hash_weight < 1, f"{where}.hash_weight must lie in [0, 1), got {self.hash_weight}")
        _check(self.normalize_k >= 0 and self.mutual_k >= 0,
               f"{where}.normalize_k and {where}.mutual_k must be >= 0 (0: off)")
        from neardup.scoring import SEARCHES

        _check(self.search in SEARCHES, f"{where}.search must be one of {SEARCHES}, got {self.search!r}")
        _check(self.nprobe >= 1 and self.block_size >= 1, f"{where}.nprobe and {where}.block_size must be >= 1")
        if self.whiten or self.hash_weight or self.normalize_k:
            _check(self.metric == "cosine", f"{where}.whiten, hash_weight and normalize_k need metric 'cosine'")


@dataclass(frozen=True)
class PlantParams:
    n: int = 60
    transforms: tuple = ("jpeg", "downscale", "crop", "hflip", "brightness_contrast", "rotate", "grayscale",
                         "pad", "text")
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "transforms", tuple(self.transforms))

    def validate(self, where: str) -> None:
        from neardup.transforms import TRANSFORMS

        _check(isinstance(self.n, int) and self.n >= 0, f"{where}.n must be an integer >= 0, got {self.n!r}")
        _check(len(self.transforms) > 0 or self.n == 0, f"{where}.transforms must list at least one transform")
        for name in self.transforms:
            close = difflib.get_close_matches(str(name), TRANSFORMS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            _check(name in TRANSFORMS, f"{where}.transforms: unknown transform {name!r}{hint}; "
                                       f"valid: {', '.join(TRANSFORMS)}")


@dataclass(frozen=True)
class EvaluateParams:
    min_precision: float = 0.0
    max_unrelated: float = 0.02
    fallback_eps: float = 0.15
    plant: PlantParams = field(default_factory=PlantParams)

    def validate(self, where: str) -> None:
        _check(0.0 <= self.min_precision <= 1.0, f"{where}.min_precision must lie in [0, 1]")
        _check(0.0 <= self.max_unrelated <= 1.0, f"{where}.max_unrelated must lie in [0, 1]")


@dataclass(frozen=True)
class HashParams:
    methods: tuple = ("phash", "dhash")
    hash_size: int = 8

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods or ()))

    def validate(self, where: str) -> None:
        from neardup.hashing import HASH_METHODS

        for name in self.methods:
            _check(name in HASH_METHODS, f"{where}.methods: unknown hash {name!r}; valid: {', '.join(HASH_METHODS)}")
        _check(self.hash_size >= 2, f"{where}.hash_size must be >= 2")


@dataclass(frozen=True)
class ActParams:
    run: str = ""
    prefer_set: str = ""
    n_splits: int = 5
    seed: int = 0

    def validate(self, where: str) -> None:
        _check(self.n_splits >= 2, f"{where}.n_splits must be >= 2, got {self.n_splits}")


@dataclass(frozen=True)
class RenderParams:
    max_groups: int = 50
    max_pair_figures: int = 200
    thumb_size: int = 160

    def validate(self, where: str) -> None:
        _check(self.max_groups >= 0, f"{where}.max_groups must be >= 0")
        _check(self.thumb_size >= 16, f"{where}.thumb_size must be >= 16")


GROUPS = {"act": ActParams, "fetch": FetchParams, "embed": EmbedParams, "hash": HashParams, "cluster": ClusterParams,
          "evaluate": EvaluateParams, "render": RenderParams}


def load_params(group: str, path: str | Path = "params.yaml"):
    """Load and validate one params group from ``path``.

    Parameters
    ----------
    group : str
        One of ``fetch``, ``embed``, ``hash``, ``cluster``, ``evaluate``, ``act``, ``render``.
    path : str or Path
        The YAML file (read with ``yaml.safe_load``).
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repository root)")
    with path.open() as fh:
        raw = yaml.safe_load(fh) or {}
    if group not in GROUPS:
        raise ParamsError(f"unknown params group {group!r}; valid: {', '.join(GROUPS)}")
    return _build(GROUPS[group], raw.get(group), group)
