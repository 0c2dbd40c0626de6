"""The data contract every stage, method, evaluation and report shares, written once.

File names and columns of the pipeline's tables, the variant key, the readers and writers, the
:class:`Embeddings` container and the helpers that select groups. An image is known by its *id*
(its path relative to the dataset root, prefixed by the set name with several sets) and by the
*sha256* of its bytes. Pairs are unordered (``a < b``); groups are one row per ``(eps, group, id)``
with singletons left out.

Where each folder lies is the layout's business (:class:`neardup.layout.Layout`, from ``dvc.yaml``'s
``vars.paths``); the files inside them, each written by one stage::

    dataset/                manifest.csv  skipped.csv  truth.csv            (fetch)
    plants/                 manifest.csv  skipped.csv  truth.csv  images/   (plant)
    embeddings/             <variant>.npz  <variant>.plants.npz             (embed)
    hashes/                 <method>.npz  <method>.plants.npz               (hash)
    clusters/<variant>/     groups.csv  pairs.csv  planted.csv  stats.json  (cluster)
    evaluation/<variant>/   groups.csv (chosen eps)  queue.csv  reason.txt  (evaluate)
"""
from __future__ import annotations

import csv
import errno
import logging
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# --- file names inside the layout's folders (the folders and the lists to act on: neardup.layout) ---
MANIFEST, SKIPPED, TRUTH = "manifest.csv", "skipped.csv", "truth.csv"
GROUPS, PAIRS, PLANTED, STATS = "groups.csv", "pairs.csv", "planted.csv", "stats.json"
QUEUE, REASON = "queue.csv", "reason.txt"
LABEL_CONFLICTS, PRIMARY_METRICS = "label_conflicts.csv", "metrics.json"
#: Written into a ``find`` output folder: a folder scan never enters a folder holding it.
OUTPUT_MARKER = ".neardup-output"

# --- columns ------------------------------------------------------------------------------------
MANIFEST_COLUMNS = ["id", "path", "label", "label_name", "set", "sha256", "width", "height", "format", "frames",
                    "orientation", "pixel_sha256"]
SKIPPED_COLUMNS = ["path", "reason"]
TRUTH_COLUMNS = ["id", "original", "transform"]
GROUP_COLUMNS = ["eps", "group", "id", "label", "distance"]
PAIR_COLUMNS = ["a", "b", "distance", "nearest", "verified"]
OUTCOME_COLUMNS = ["eps", "id", "original", "transform", "found", "with_unrelated"]
REVIEW_COLUMNS = ["sha_a", "sha_b", "verdict", "id_a", "id_b"]
QUEUE_COLUMNS = ["variant", "a", "b", "sha_a", "sha_b", "distance", "verdict", "figure"]
KEEP_COLUMNS = ["group", "id", "set", "label", "n_members"]
REMOVE_COLUMNS = ["group", "id", "set", "label", "keeper", "keeper_set"]
FOLD_COLUMNS = ["id", "set", "label", "group", "fold"]
CONFLICT_COLUMNS = ["variant", "eps", "group", "id", "label", "set", "distance", "figure"]

#: Precision of every float written out, so a rerun gives the same bytes: significant digits in CSV
#: tables (:func:`write_table`), decimal places in the metrics JSON (:mod:`neardup.evaluate`).
DIGITS = 6


class UserError(RuntimeError):
    """Bad input or settings: the message names the file or param and what to do (exit code 2)."""


class SourceError(UserError):
    """A data source cannot be read; the message says what is wrong and what to do."""



def label_text(value) -> str:
    """One label as the text every entry point stores (CSV, mapping, Series, list): None, NaN, NA and
    '' mean no label (''); an integer keeps its spelling (``3``, also when a missing value made it the
    float ``3.0``); other values are their ``str`` (a string stripped of surrounding blanks)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value).strip()

#: errno values of a write the user can fix by making room or choosing another folder.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def os_error_message(exc: OSError, needed: int | None = None, *, target=None) -> str | None:
    """One line for a write the user can fix (disk full, quota, read-only or forbidden folder), naming
    the file (``target``, else the error's), the folder's free space and, when known, the bytes
    needed; None for other errors."""
    name = target or exc.filename or "a file"
    folder = Path(str(name)).parent if target or exc.filename else Path.cwd()
    if exc.errno in NO_SPACE:
        try:
            free = _size(shutil.disk_usage(folder if folder.exists() else Path.cwd()).free)
        except OSError:
            free = "unknown"
        need = f" ({_size(needed)} needed)" if needed else ""
        return (f"no space left on the device of {folder} writing {Path(str(name)).name}{need}, {free} free: "
                f"free some space or move the output or cache.dir elsewhere, then run again (it resumes)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {name}: {exc.strerror}; choose a folder you can write to (or fix its permissions)"
    return None


def atomic_write(path, data, *, suffix: str = "") -> Path:
    """Write ``path`` atomically: ``data`` (bytes, str, or a callable filling the path it is given) goes
    to a temporary file in the same folder (``.<name>.<pid>.<thread>.tmp<suffix>``: numpy's savez
    wants ``.npz``), which is then renamed into place. On any failure, an interrupt included, the
    temporary file is removed; a full disk is a :class:`UserError` naming the folder, its free space
    and the bytes needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp{suffix}")
    try:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as exc:
        message = os_error_message(exc, None if callable(data) else len(data), target=path)
        if message is None:
            raise
        raise UserError(message) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def variant_key(model: str, size=None) -> str:
    """Name of one variant: file stem and report key, e.g. ``efficientnet-lite0_auto`` or ``phash``."""
    return model if size is None else f"{model}_{size}"


def variant_keys(models, sizes, hashes=()) -> list[str]:
    """Every variant of the sweep: each model at each size, then each hash baseline. The first is the
    *primary* variant (the one ``act`` makes lists from)."""
    return [variant_key(m, s) for m in models for s in sizes] + list(hashes)


def primary_variant(models, sizes) -> str:
    """The *primary* variant: the first model at the first size (the first of :func:`variant_keys`)."""
    return variant_key(models[0], sizes[0])


# --- tables -------------------------------------------------------------------------------------
@dataclass
class FetchResult:
    """A manifest of readable images, the files skipped (with a reason) and known duplicates.

    Attributes
    ----------
    manifest : DataFrame, columns :data:`MANIFEST_COLUMNS`, one row per image, sorted by id
    skipped : DataFrame, columns :data:`SKIPPED_COLUMNS`
    truth : DataFrame, columns :data:`TRUTH_COLUMNS`, or None when nothing is known (real data)
    """

    manifest: pd.DataFrame
    skipped: pd.DataFrame
    truth: pd.DataFrame | None = None


def empty_frame(columns: list[str]) -> pd.DataFrame:
    """An empty DataFrame with ``columns`` (dtype object)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _check_columns(df: pd.DataFrame, columns: list[str], what: str) -> None:
    if list(df.columns) != columns:
        raise ValueError(f"{what} must have columns {columns}, got {list(df.columns)}")


# --- CSV cells: no formula injection ------------------------------------------------------------
#: A text cell starting with one of these (after any leading ``'``) is written with one more leading
#: ``'``, so a spreadsheet shows it as text instead of running it as a formula (OWASP "CSV injection").
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_FIRST = frozenset("=+-@\t\r'")


def _text_columns(table: pd.DataFrame):
    return [c for c in table.columns
            if pd.api.types.is_object_dtype(table[c]) or pd.api.types.is_string_dtype(table[c])]


def _replace_cells(table: pd.DataFrame, change) -> pd.DataFrame:
    """``table`` with ``change(cell)`` (a new str, or None to keep it) applied to the str cells of its
    text columns that start with a character of :data:`_FIRST`; a copy when a cell changes."""
    out = table
    for column in _text_columns(table):
        cells = table[column].to_numpy(dtype=object)
        known: dict[str, str | None] = {}  # labels such as "-1" repeat
        new = {}
        for i in [i for i, v in enumerate(cells) if isinstance(v, str) and v[:1] in _FIRST]:
            if cells[i] not in known:
                known[cells[i]] = change(str(cells[i]))
            if known[cells[i]] is not None:
                new[i] = known[cells[i]]
        if new:
            cells = cells.copy()
            cells[list(new)] = list(new.values())
            out = out.copy() if out is table else out
            out[column] = cells
    return out


def escape_cells(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its text cells that start with ``= + - @``, tab or CR (after any ``'``) given one
    more leading ``'``; cells that are numbers (``-1``) stay as they are. :func:`unescape_cells`
    reverses it exactly. Returns a copy when a cell changes, else ``table`` itself."""
    return _replace_cells(table, lambda v: "'" + v if _FORMULA.match(v) and not _NUMBER.fullmatch(v) else None)


def unescape_cells(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as read from a CSV of the contract, with the ``'`` that :func:`escape_cells` added
    removed again. Returns a copy when a cell changes, else ``table`` itself."""
    return _replace_cells(table, lambda v: v[1:] if v[0] == "'" and _FORMULA.match(v, 1) else None)


def _to_csv(table: pd.DataFrame, path: Path, **kwargs) -> None:
    table = escape_cells(table)
    # pandas quotes cells holding a newline but not a bare CR, which readers take for a line end
    has_cr = any(isinstance(v, str) and "\r" in v for c in _text_columns(table) for v in table[c].to_numpy(object))
    table.to_csv(path, index=False, **({"quoting": csv.QUOTE_ALL} if has_cr else {}), **kwargs)


def write_fetch_result(result: FetchResult, out_dir: Path) -> None:
    """Write ``manifest.csv``, ``skipped.csv`` and ``truth.csv`` (header only when ``truth`` is None)."""
    out_dir = Path(out_dir)
    truth = result.truth if result.truth is not None else empty_frame(TRUTH_COLUMNS)
    for table, columns, name in ((result.manifest, MANIFEST_COLUMNS, MANIFEST),
                                 (result.skipped, SKIPPED_COLUMNS, SKIPPED), (truth, TRUTH_COLUMNS, TRUTH)):
        _check_columns(table, columns, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    _to_csv(result.manifest, out_dir / MANIFEST)
    _to_csv(result.skipped, out_dir / SKIPPED)
    _to_csv(truth, out_dir / TRUTH)
    log.info("wrote %s: %d images, %d skipped, %d known duplicates", out_dir, len(result.manifest),
             len(result.skipped), len(truth))


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write a CSV of the contract with floats to :data:`DIGITS` significant digits and text cells
    that a spreadsheet would variant as a formula prefixed with ``'`` (:func:`escape_cells`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _to_csv(table, path, float_format=f"%.{DIGITS}g")


def read_table(path) -> pd.DataFrame:
    """A CSV of the contract with every column as str ('' for empty cells), cells as they were
    before :func:`write_table` escaped them."""
    return unescape_cells(pd.read_csv(path, dtype=str, keep_default_na=False))


def read_manifest(path) -> pd.DataFrame:
    """The dataset's ``manifest.csv`` (as :func:`read_table`); a :class:`UserError` when it lists no image."""
    path = Path(path)
    manifest = read_table(path)
    if not len(manifest):
        raise UserError(f"{path} lists no images, so there is nothing to compare: fetch found no readable image "
                        f"(why each file was skipped is in {path.with_name(SKIPPED)}); check fetch.source and "
                        f"fetch.input in params.yaml")
    return manifest


def read_truth(dataset: Path) -> pd.DataFrame | None:
    """The dataset's own ground truth (e.g. the demo's duplicates), or None when it has none."""
    path = Path(dataset) / TRUTH
    truth = read_table(path) if path.is_file() else None
    return truth if truth is not None and len(truth) else None


def read_groups(path: Path) -> pd.DataFrame:
    """``groups.csv``: ``eps`` and ``distance`` as float (NaN distance: joined through others), ``group`` int."""
    groups = read_table(path)
    return groups.astype({"eps": float, "group": int}).assign(
        distance=pd.to_numeric(groups["distance"], errors="coerce"))


def read_keep(path: Path) -> pd.DataFrame:
    """``keep.csv``: one keeper per group, ``group`` and ``n_members`` as int."""
    return read_table(path).astype({"group": int, "n_members": int})


def read_remove(path: Path) -> pd.DataFrame:
    """``remove.csv``: the other members of each group, ``group`` as int."""
    return read_table(path).astype({"group": int})


def content_keys(manifest: pd.DataFrame) -> np.ndarray:
    """A key per manifest row that is equal for images with the same content: the decoded pixels'
    hash (``pixel_sha256``) where the manifest has it, else the file's ``sha256``, shape (n,)."""
    keys = manifest["sha256"].fillna("").astype(str).to_numpy(dtype=object)
    if "pixel_sha256" in manifest.columns:
        pixels = manifest["pixel_sha256"].fillna("").astype(str).to_numpy(dtype=object)
        keys = np.where(pixels != "", "pixels:" + pixels, keys)
    return keys.astype(str)


def read_pairs(path: Path) -> pd.DataFrame:
    """``pairs.csv``: the scored candidate pairs, ``distance`` as float, ``nearest`` as int (0 / 1),
    ``verified`` as int (1: proven a copy by geometric verification, -1: refuted, 0: neither or not verified)."""
    return read_table(path).astype({"distance": float, "nearest": int, "verified": int})


def read_outcomes(path: Path) -> pd.DataFrame:
    """``planted.csv``: what happened to each planted copy at each eps."""
    table = read_table(path)
    return table.astype({"eps": float}).assign(found=table["found"] == "True",
                                               with_unrelated=table["with_unrelated"] == "True")


def read_queue(path) -> pd.DataFrame:
    """A review queue, ``distance`` as float (NaN for a pair only chained into its group)."""
    queue = read_table(path)
    queue["distance"] = pd.to_numeric(queue["distance"], errors="coerce")
    return queue


# --- selecting groups ---------------------------------------------------------------------------
def groups_at(groups: pd.DataFrame, eps: float) -> pd.DataFrame:
    """The rows of ``groups`` (columns ``eps, group, id, ...``) at one eps of the sweep."""
    return groups[np.isclose(groups["eps"].astype(float), float(eps))]


def label_conflict_groups(groups: pd.DataFrame) -> list:
    """Ids of the groups whose members carry more than one non-empty label."""
    labelled = groups[groups["label"].astype(str) != ""]
    counts = labelled.groupby("group")["label"].nunique()
    return sorted(counts[counts > 1].index.tolist())


def display_labels(manifest: pd.DataFrame) -> pd.Series:
    """Each image's label as people read it: ``label_name`` where given, else ``label`` (index: id)."""
    named = manifest["label_name"].astype(str)
    return pd.Series(np.where(named != "", named, manifest["label"].astype(str)), index=manifest["id"].astype(str))


# --- vectors ------------------------------------------------------------------------------------
@dataclass
class Embeddings:
    """Vectors (CNN descriptors or hash bits as ±1) with the ids they belong to.

    Attributes
    ----------
    ids, sha256 : ndarray of str, shape (n,)
    vectors : ndarray of float32, shape (n, d)
    skipped : DataFrame with columns ``id, reason`` (images that could not be embedded)
    input_size : int
        The model's input side in pixels (0 for hashes).
    images_per_second : float
        Measured in this process only; never saved (outputs hold no timings).
    runtime : str
        The embed runtime that made the vectors (``tflite`` or ``keras``; '' for hashes); in memory only,
        for the timings log.
    """

    ids: np.ndarray
    sha256: np.ndarray
    vectors: np.ndarray
    skipped: pd.DataFrame
    input_size: int = 0
    images_per_second: float = float("nan")
    runtime: str = ""

    def save(self, path: str | Path) -> None:
        """Write to ``.npz`` atomically (plain str/float arrays, readable without pickle)."""
        atomic_write(path, lambda tmp: np.savez(
            tmp, ids=self.ids.astype(str), sha256=self.sha256.astype(str), vectors=np.asarray(self.vectors, np.float32),
            skipped_ids=self.skipped["id"].to_numpy(dtype=str),
            skipped_reasons=self.skipped["reason"].to_numpy(dtype=str),
            input_size=np.int64(self.input_size)), suffix=".npz")

    @classmethod
    def load(cls, path: str | Path) -> "Embeddings":
        with np.load(path, allow_pickle=False) as z:
            skipped = pd.DataFrame({"id": z["skipped_ids"], "reason": z["skipped_reasons"]})
            return cls(ids=z["ids"], sha256=z["sha256"], vectors=z["vectors"], skipped=skipped,
                       input_size=int(z["input_size"]))

    def rows_for(self, ids) -> np.ndarray:
        """``vectors`` in the order of ``ids``, zero rows for ids not here. Shape (len(ids), d), float32."""
        where = {str(k): i for i, k in enumerate(self.ids)}
        out = np.zeros((len(ids), self.vectors.shape[1]), np.float32)
        found = [(i, where[str(k)]) for i, k in enumerate(ids) if str(k) in where]
        if found:
            mine, theirs = map(list, zip(*found))
            out[mine] = self.vectors[theirs]
        if len(found) < len(ids):
            log.warning("%d of %d ids have no vector here; they get zero rows", len(ids) - len(found), len(ids))
        return out
