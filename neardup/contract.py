"""The data contract every stage, method, evaluation and report shares, written once.

File names and columns of the pipeline's tables, the run key, the readers and writers, the
:class:`Embeddings` container and the helpers that select groups. An image is known by its *id*
(its path relative to the dataset root, prefixed by the set name with several sets) and by the
*sha256* of its bytes. Pairs are unordered (``a < b``); groups are one row per ``(eps, group, id)``
with singletons left out.

Folders (each written by one stage, see ``dvc.yaml``)::

    data/dataset/   manifest.csv  skipped.csv  truth.csv          (fetch)
    data/plants/    manifest.csv  skipped.csv  truth.csv  images/ (plant)
    data/embeddings/<run>.npz  <run>.plants.npz                   (embed, embed_plants)
    data/hashes/<method>.npz   <method>.plants.npz                (hash)
    data/clusters/<run>/   groups.csv  pairs.csv  planted.csv  stats.json    (cluster)
    data/evaluation/<run>/ groups.csv (chosen eps)  queue.csv  reason.txt    (evaluate)
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# --- file names ---------------------------------------------------------------------------------
MANIFEST, SKIPPED, TRUTH = "manifest.csv", "skipped.csv", "truth.csv"
GROUPS, PAIRS, PLANTED, STATS = "groups.csv", "pairs.csv", "planted.csv", "stats.json"
QUEUE, REASON = "queue.csv", "reason.txt"

# --- columns ------------------------------------------------------------------------------------
MANIFEST_COLUMNS = ["id", "path", "label", "label_name", "set", "sha256", "width", "height", "format"]
SKIPPED_COLUMNS = ["path", "reason"]
TRUTH_COLUMNS = ["id", "original", "transform"]
GROUP_COLUMNS = ["eps", "group", "id", "label", "distance"]
PAIR_COLUMNS = ["a", "b", "distance"]
OUTCOME_COLUMNS = ["eps", "id", "original", "transform", "found", "with_unrelated"]

#: Precision of every float written out, so a rerun gives the same bytes: significant digits in CSV
#: tables (:func:`write_table`), decimal places in the metrics JSON (:mod:`neardup.evaluate`).
DIGITS = 6


class UserError(RuntimeError):
    """Bad input or settings: the message names the file or param and what to do (exit code 2)."""


class SourceError(UserError):
    """A data source cannot be read; the message says what is wrong and what to do."""


def run_key(model: str, size=None) -> str:
    """Name of one run: file stem and report key, e.g. ``efficientnet-lite0_auto`` or ``phash``."""
    return model if size is None else f"{model}_{size}"


def run_keys(models, sizes, hashes=()) -> list[str]:
    """Every run of the sweep: each model at each size, then each hash baseline. The first is the
    *primary* run (the one ``act`` makes lists from)."""
    return [run_key(m, s) for m in models for s in sizes] + list(hashes)


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


def write_fetch_result(result: FetchResult, out_dir: Path) -> None:
    """Write ``manifest.csv``, ``skipped.csv`` and ``truth.csv`` (header only when ``truth`` is None)."""
    out_dir = Path(out_dir)
    truth = result.truth if result.truth is not None else empty_frame(TRUTH_COLUMNS)
    for table, columns, name in ((result.manifest, MANIFEST_COLUMNS, MANIFEST),
                                 (result.skipped, SKIPPED_COLUMNS, SKIPPED), (truth, TRUTH_COLUMNS, TRUTH)):
        _check_columns(table, columns, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.manifest.to_csv(out_dir / MANIFEST, index=False)
    result.skipped.to_csv(out_dir / SKIPPED, index=False)
    truth.to_csv(out_dir / TRUTH, index=False)
    log.info("wrote %s: %d images, %d skipped, %d known duplicates", out_dir, len(result.manifest),
             len(result.skipped), len(truth))


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write a CSV of the contract with floats to :data:`DIGITS` significant digits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, float_format=f"%.{DIGITS}g")


def read_table(path) -> pd.DataFrame:
    """A CSV of the contract with every column as str ('' for empty cells)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


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


def read_pairs(path: Path) -> pd.DataFrame:
    """``pairs.csv``: the scored candidate pairs, ``distance`` as float."""
    return read_table(path).astype({"distance": float})


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
    """

    ids: np.ndarray
    sha256: np.ndarray
    vectors: np.ndarray
    skipped: pd.DataFrame
    input_size: int = 0
    images_per_second: float = float("nan")

    def save(self, path: str | Path) -> None:
        """Write to ``.npz`` atomically (plain str/float arrays, readable without pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, ids=self.ids.astype(str), sha256=self.sha256.astype(str),
                 vectors=self.vectors.astype(np.float32), skipped_ids=self.skipped["id"].to_numpy(dtype=str),
                 skipped_reasons=self.skipped["reason"].to_numpy(dtype=str), input_size=np.int64(self.input_size))
        os.replace(tmp, path)

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
