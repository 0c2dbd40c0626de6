"""Typed, validated parameters: one frozen dataclass per ``params.yaml`` group.

``params.yaml`` is the one home of every value: these classes carry no defaults, so a missing key
is an error naming it, an unknown key is an error suggesting the closest valid one, and a value of
the wrong type is an error naming the param (a typo in ``params.yaml`` or in ``dvc exp run -S``
fails at once instead of being silently ignored). Names that only a stage knows (models, hashes,
transforms) are checked by that stage with :func:`check_choice`, so this module imports no stage.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from neardup.contract import UserError

SOURCES = ("demo", "folder", "kaggle", "tfrecords")
SYMLINKS = ("none", "inside", "all")
METRICS = ("cosine", "euclidean")
SEARCHES = ("exact", "approximate", "auto")
POOLINGS = ("avg", "max")
RUNTIMES = ("auto", "tflite", "keras")
#: Lists that dvc.yaml expands into one stage per entry (``matrix``): DVC cannot read a single value
#: there, so these must be YAML lists (other list params also take a single value as a list of one).
MATRIX_KEYS = ("embed.models", "embed.sizes", "hash.methods")


class ParamsError(UserError, ValueError):
    """A value in params.yaml is missing, misspelt, of the wrong type or out of range."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ParamsError(message)


def _did_you_mean(value, valid, prefix: str = "") -> str:
    """`` (did you mean '<prefix><closest>'?)`` for the closest of ``valid``, or '' when none is close."""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


#: What a value that dvc.yaml writes into a stage's command may look like (a model, a size, a hash):
#: no blank, quote, ``;``, ``$``, backtick or newline ever reaches the shell that runs it.
COMMAND_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(value, where: str) -> None:
    """Raise :class:`ParamsError` unless ``value`` is a plain name or number (:data:`COMMAND_VALUE`):
    a value dvc.yaml puts into a stage's shell command (``embed.models``, ``embed.sizes``,
    ``hash.methods``, ``cluster.hash``)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not COMMAND_VALUE.fullmatch(str(value)):
        raise ParamsError(f"{where}: {value!r} is not a name (letters, digits, '.', '_', '-'): dvc.yaml writes it "
                          f"into a shell command, so nothing else is accepted")


def check_choice(value, valid, where: str) -> None:
    """Raise :class:`ParamsError` naming ``where`` unless ``value`` is one of ``valid`` (with a "did you mean")."""
    if value not in valid:
        raise ParamsError(f"{where}: unknown value {value!r}{_did_you_mean(value, valid)}; "
                          f"valid: {', '.join(map(str, valid))}")


def _convert(value, kind, where: str, base=None):
    """``value`` as the annotated ``kind`` (int, float, bool, str, tuple or a nested params class,
    whose missing keys come from ``base``)."""
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, where, base=base)
    if kind is tuple:
        _check(isinstance(value, (list, tuple)) or where not in MATRIX_KEYS,
               f"{where} must be a list, e.g. [{value}], got {value!r} (dvc.yaml makes one stage per entry)")
        value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        seen = [repr(v) for v in value]
        twice = next((v for k, v in enumerate(value) if repr(v) in seen[:k]), None)
        _check(len(set(seen)) == len(seen), f"{where} lists {twice!r} twice: give each entry once")
        if where in MATRIX_KEYS:
            for v in value:
                check_name(v, where)
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    _check(isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)),
           f"{where} must be {names[kind]}, got {value!r}")
    return value


def _build(cls, raw: Any, where: str, base=None):
    """Build params class ``cls`` from mapping ``raw``; keys missing from ``raw`` come from ``base``."""
    _check(isinstance(raw, dict), f"{where}: expected a mapping of parameters, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ParamsError(f"unknown parameter '{where}.{key}'{_did_you_mean(key, names, f'{where}.')}; "
                              f"valid keys: {', '.join(names)}")
    values = {}
    for name in names:
        if name in raw:
            values[name] = _convert(raw[name], hints[name], f"{where}.{name}", getattr(base, name, None))
        elif base is not None and hasattr(base, name):
            values[name] = getattr(base, name)
        else:
            raise ParamsError(f"missing parameter '{where}.{name}': add it to params.yaml")
    obj = cls(**values)
    obj.validate(where)
    return obj


@dataclass(frozen=True)
class DemoParams:
    n_distinct: int
    n_duplicates: int
    n_label_conflicts: int
    seed: int
    n_test: int
    n_cross: int

    def validate(self, where: str) -> None:
        _check(self.n_distinct >= 2, f"{where}.n_distinct must be >= 2, got {self.n_distinct}")
        _check(self.n_test >= 0 and self.n_cross >= 0, f"{where}.n_test and {where}.n_cross must be >= 0")
        _check(self.n_cross == 0 or self.n_test > 0, f"{where}.n_cross needs a test set: set {where}.n_test > 0")
        _check(0 <= self.n_duplicates, f"{where}.n_duplicates must be >= 0, got {self.n_duplicates}")
        _check(0 <= self.n_label_conflicts <= self.n_duplicates,
               f"{where}.n_label_conflicts must be between 0 and n_duplicates, got {self.n_label_conflicts}")


@dataclass(frozen=True)
class FolderParams:
    images: str
    labels_csv: str
    label_map: str

    def validate(self, where: str) -> None:
        pass


@dataclass(frozen=True)
class KaggleParams:
    competition: str

    def validate(self, where: str) -> None:
        _check(bool(self.competition), f"{where}.competition must name a competition slug")


@dataclass(frozen=True)
class TfrecordsParams:
    pattern: str

    def validate(self, where: str) -> None:
        _check(bool(self.pattern), f"{where}.pattern must be a glob such as '*.tfrec'")


@dataclass(frozen=True)
class SetParams:
    """One named set of ``fetch.sets``: its own source, input folder and options (the rest as in fetch)."""

    name: str
    source: str
    input: str
    demo: DemoParams
    folder: FolderParams
    kaggle: KaggleParams
    tfrecords: TfrecordsParams

    def validate(self, where: str) -> None:
        # the name becomes a folder (data/dataset/sets/<name>) and the id prefix <name>/
        _check(bool(self.name) and self.name == self.name.strip() and self.name not in (".", "..")
               and not any(c in self.name for c in "/\\\0"),
               f"{where}.name must be a plain folder name (not empty, not '.' or '..', no '/', '\\' or NUL, "
               f"no surrounding spaces), got {self.name!r}")
        check_choice(self.source, SOURCES, f"{where}.source")


@dataclass(frozen=True)
class FetchParams:
    source: str
    input: str
    set_name: str
    demo: DemoParams
    folder: FolderParams
    kaggle: KaggleParams
    tfrecords: TfrecordsParams
    max_pixels: int
    symlinks: str
    sets: tuple

    def validate(self, where: str) -> None:
        check_choice(self.source, SOURCES, f"{where}.source")
        _check(self.max_pixels >= 1, f"{where}.max_pixels must be an integer >= 1, got {self.max_pixels}")
        check_choice(self.symlinks, SYMLINKS, f"{where}.symlinks")
        sets = tuple(_build(SetParams, s, f"{where}.sets[{i}]", base=self) for i, s in enumerate(self.sets))
        object.__setattr__(self, "sets", sets)
        names = [s.name for s in sets]
        _check(len(names) == len(set(names)), f"{where}.sets: set names must be unique, got {names}")
        root = Path(self.input).resolve()
        for i, spec in enumerate(sets):
            inside = Path(spec.input).resolve()
            _check(spec.source == "demo" or inside == root or root in inside.parents,
                   f"{where}.sets[{i}].input ({spec.input}) must lie under {where}.input ({self.input}), "
                   f"the folder DVC tracks as the fetch stage's dependency")


@dataclass(frozen=True)
class PlantParams:
    n: int
    transforms: tuple
    seed: int

    def validate(self, where: str) -> None:
        _check(self.n >= 0, f"{where}.n must be an integer >= 0, got {self.n!r}")
        _check(len(self.transforms) > 0 or self.n == 0, f"{where}.transforms must list at least one transform")


@dataclass(frozen=True)
class EmbedParams:
    models: tuple
    sizes: tuple
    weights: str
    pooling: str
    batch_size: int
    runtime: str

    def validate(self, where: str) -> None:
        _check(len(self.models) > 0, f"{where}.models must list at least one model")
        _check(len(self.sizes) > 0, f"{where}.sizes must list at least one size (or auto)")
        for size in self.sizes:
            _check(size == "auto" or (isinstance(size, int) and 32 <= size <= 1024),
                   f"{where}.sizes: each size must be 'auto' or an integer in 32..1024, got {size!r}")
        check_choice(self.pooling, POOLINGS, f"{where}.pooling")
        check_choice(self.runtime, RUNTIMES, f"{where}.runtime")
        _check(self.batch_size >= 1, f"{where}.batch_size must be >= 1, got {self.batch_size}")
        _check(bool(self.weights), f"{where}.weights must be imagenet, noisy-student, none or a file path")


@dataclass(frozen=True)
class HashParams:
    methods: tuple
    size: int

    def validate(self, where: str) -> None:
        _check(len(self.methods) > 0, f"{where}.methods must list at least one hash (cluster.hash among them)")
        _check(self.size >= 2, f"{where}.size must be >= 2, got {self.size}")


@dataclass(frozen=True)
class VerifyParams:
    enabled: bool
    max_side: int
    max_keypoints: int
    min_side: int
    min_inliers: int
    min_ratio: float
    factor: float
    refute_keypoints: int
    glance_patience: int
    min_agreement: float

    def validate(self, where: str) -> None:
        _check(self.glance_patience >= 0, f"{where}.glance_patience must be >= 0 (0: no glance beyond the largest "
                                          f"eps), got {self.glance_patience}")
        _check(self.max_side >= 64, f"{where}.max_side must be >= 64, got {self.max_side}")
        _check(self.max_keypoints >= 10, f"{where}.max_keypoints must be >= 10, got {self.max_keypoints}")
        _check(self.min_side >= 16, f"{where}.min_side must be >= 16, got {self.min_side}")
        _check(self.min_inliers >= 4, f"{where}.min_inliers must be >= 4 (a similarity needs 2 points; "
                                      f"RANSAC agreement needs more), got {self.min_inliers}")
        _check(0 <= self.min_ratio <= 1, f"{where}.min_ratio must lie in [0, 1], got {self.min_ratio}")
        _check(self.refute_keypoints >= 0,
               f"{where}.refute_keypoints must be >= 0 (0: never), got {self.refute_keypoints}")
        _check(0 < self.factor <= 1, f"{where}.factor must lie in (0, 1], got {self.factor}")
        _check(0 <= self.min_agreement <= 1, f"{where}.min_agreement must lie in [0, 1] (0: keypoints alone prove), "
                                             f"got {self.min_agreement}")


@dataclass(frozen=True)
class ClusterParams:
    metric: str
    eps: tuple
    whiten: float
    hash: str
    hash_weight: float
    normalize_k: int
    candidates: int
    search: str
    nprobe: int
    block_size: int
    verify: VerifyParams

    def validate(self, where: str) -> None:
        check_choice(self.metric, METRICS, f"{where}.metric")
        check_name(self.hash, f"{where}.hash")
        _check(len(self.eps) > 0 and all(isinstance(e, (int, float)) and not isinstance(e, bool) and e > 0
                                         for e in self.eps),
               f"{where}.eps must be a non-empty list of positive numbers, got {list(self.eps)}")
        eps = sorted(float(e) for e in self.eps)
        twice = [a for a, b in zip(eps, eps[1:]) if a == b]
        _check(not twice, f"{where}.eps lists {twice[0] if twice else 0:g} twice: give each eps once")
        object.__setattr__(self, "eps", tuple(eps))
        if self.metric == "cosine":
            _check(max(self.eps) <= 2.0, f"{where}.eps: cosine distances lie in [0, 2], got {max(self.eps)}")
        _check(self.whiten >= 0, f"{where}.whiten must be >= 0 (0: off), got {self.whiten}")
        _check(0 <= self.hash_weight < 1, f"{where}.hash_weight must lie in [0, 1), got {self.hash_weight}")
        _check(self.normalize_k >= 0, f"{where}.normalize_k must be >= 0 (0: off), got {self.normalize_k}")
        _check(self.candidates >= 1, f"{where}.candidates must be >= 1, got {self.candidates}")
        check_choice(self.search, SEARCHES, f"{where}.search")
        _check(self.nprobe >= 1 and self.block_size >= 1, f"{where}.nprobe and {where}.block_size must be >= 1")
        if self.whiten or self.hash_weight or self.normalize_k:
            _check(self.metric == "cosine", f"{where}.whiten, hash_weight and normalize_k need metric 'cosine'")


@dataclass(frozen=True)
class EvaluateParams:
    min_precision: float
    max_unrelated: float
    max_group_share: float
    max_grouped_share: float
    max_pairs_per_image: float
    fallback_eps: float
    max_queue: int

    def validate(self, where: str) -> None:
        for name in ("min_precision", "max_unrelated", "max_group_share", "max_grouped_share"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"{where}.{name} must lie in [0, 1], got {getattr(self, name)}")
        _check(self.max_pairs_per_image > 0, f"{where}.max_pairs_per_image must be > 0, got {self.max_pairs_per_image}")
        _check(self.fallback_eps > 0, f"{where}.fallback_eps must be > 0")
        _check(self.max_queue >= 1, f"{where}.max_queue must be >= 1, got {self.max_queue}")


@dataclass(frozen=True)
class ActParams:
    prefer_set: str
    n_splits: int
    seed: int

    def validate(self, where: str) -> None:
        _check(self.n_splits >= 2, f"{where}.n_splits must be >= 2, got {self.n_splits}")


@dataclass(frozen=True)
class RenderParams:
    max_groups: int
    max_pair_figures: int
    thumb_size: int

    def validate(self, where: str) -> None:
        _check(self.max_groups >= 0 and self.max_pair_figures >= 0,
               f"{where}.max_groups and {where}.max_pair_figures must be >= 0")
        _check(self.thumb_size >= 16, f"{where}.thumb_size must be >= 16")


@dataclass(frozen=True)
class CacheParams:
    dir: str

    def validate(self, where: str) -> None:
        pass


ENGINES = ("local", "dask")


@dataclass(frozen=True)
class EngineParams:
    kind: str
    address: str
    shard_size: int

    def validate(self, where: str) -> None:
        check_choice(self.kind, ENGINES, f"{where}.kind")
        _check(self.kind == "local" or bool(self.address),
               f"{where}.address must name a Dask scheduler (tcp://host:8786) or local:N when {where}.kind is dask")
        if self.address.startswith("local:"):
            _check(self.address[6:].isdigit() and int(self.address[6:]) >= 1,
                   f"{where}.address local:N needs a number of workers >= 1, got {self.address!r}")
        _check(self.shard_size >= 1, f"{where}.shard_size must be >= 1, got {self.shard_size}")


GROUPS = {"fetch": FetchParams, "plant": PlantParams, "embed": EmbedParams, "hash": HashParams,
          "cluster": ClusterParams, "evaluate": EvaluateParams, "act": ActParams, "render": RenderParams,
          "cache": CacheParams, "engine": EngineParams}


#: The defaults: the repository's params.yaml, shipped in the package (``neardup/params.yaml``).
DEFAULTS = Path(__file__).with_name("params.yaml")


def default_params() -> dict:
    """The default params (a fresh nested dict), as in ``params.yaml``: what ``find_duplicates``,
    ``neardup find`` and ``neardup init`` start from."""
    return yaml.safe_load(DEFAULTS.read_text())


def read_params(path: str | Path = "params.yaml") -> dict:
    """Every group of a params file, as read (:func:`params_from_dict` checks one group).

    Raises
    ------
    ParamsError
        The file is missing or not YAML (a mapping of groups); the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the project's root)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    _check(isinstance(raw, dict), f"{path}: expected a mapping of params groups, got {type(raw).__name__}")
    return raw


def load_params(group: str, path: str | Path = "params.yaml"):
    """Load and validate one params group of the file ``path`` (:func:`read_params`,
    :func:`params_from_dict`).

    Raises
    ------
    ParamsError
        The file is missing or not YAML, or a key of the group is missing, unknown, of the wrong
        type or out of range; the message names it.
    """
    return params_from_dict(read_params(path), group, where=str(path))


def params_from_dict(raw: dict, group: str, *, where: str = "params"):
    """Validate one params group from an already-loaded mapping (``raw[group]``), as :func:`load_params`
    does from a file; ``where`` names the source in the error when the group is missing."""
    check_choice(group, GROUPS, "params group")
    _check(isinstance(raw, dict) and group in raw, f"{where}: missing params group '{group}'")
    return _build(GROUPS[group], raw[group], group)
