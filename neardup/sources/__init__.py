"""Data sources for the fetch stage and the tables they produce.

Every source (the offline demo, a local folder, Kaggle TFRecords, ...) returns a
:class:`FetchResult`: a *manifest* of readable images, a *skipped* list of the files
that could not be used (with a human-readable reason) and, for sources that plant
duplicates on purpose, a *truth* table of those planted copies.

The submodules (``demo``, ``folder``, ``kaggle``, ``tfrecords``) are not imported
here, so importing this package stays cheap and free of side effects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["id", "path", "label", "label_name", "set", "sha256", "width", "height", "format"]
SKIPPED_COLUMNS = ["path", "reason"]
TRUTH_COLUMNS = ["id", "original", "transform"]

#: Manifest columns that hold strings (everything except width/height).
_MANIFEST_STR_COLUMNS = [c for c in MANIFEST_COLUMNS if c not in ("width", "height")]


class SourceError(RuntimeError):
    """A data source cannot be read; the message says what is wrong and what to do."""


@dataclass
class FetchResult:
    """The output of a data source.

    Attributes
    ----------
    manifest : pandas.DataFrame
        One row per readable image, columns :data:`MANIFEST_COLUMNS`, sorted by ``id``.
    skipped : pandas.DataFrame
        One row per file that is not a usable image, columns :data:`SKIPPED_COLUMNS`.
    truth : pandas.DataFrame or None
        One row per planted duplicate, columns :data:`TRUTH_COLUMNS`; ``None`` when the
        source plants nothing (real data).
    """

    manifest: pd.DataFrame
    skipped: pd.DataFrame
    truth: pd.DataFrame | None = None


def empty_frame(columns: list[str]) -> pd.DataFrame:
    """Return an empty DataFrame with the given ``columns`` (all of dtype ``object``)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _check_columns(df: pd.DataFrame, columns: list[str], what: str) -> None:
    if list(df.columns) != columns:
        raise ValueError(f"{what} must have columns {columns}, got {list(df.columns)}")


def write_fetch_result(result: FetchResult, out_dir: Path) -> None:
    """Write ``manifest.csv``, ``skipped.csv`` and ``truth.csv`` into ``out_dir``.

    Parameters
    ----------
    result : FetchResult
        The tables to write; ``truth=None`` writes a ``truth.csv`` with only the header.
    out_dir : Path
        Output folder, created if missing.

    Raises
    ------
    ValueError
        If a table does not have the contract's columns (in order).
    """
    out_dir = Path(out_dir)
    truth = result.truth if result.truth is not None else empty_frame(TRUTH_COLUMNS)
    _check_columns(result.manifest, MANIFEST_COLUMNS, "manifest")
    _check_columns(result.skipped, SKIPPED_COLUMNS, "skipped")
    _check_columns(truth, TRUTH_COLUMNS, "truth")
    out_dir.mkdir(parents=True, exist_ok=True)
    result.manifest.to_csv(out_dir / "manifest.csv", index=False)
    result.skipped.to_csv(out_dir / "skipped.csv", index=False)
    truth.to_csv(out_dir / "truth.csv", index=False)
    log.info(
        "wrote %s: %d images, %d skipped, %d planted duplicates",
        out_dir, len(result.manifest), len(result.skipped), len(truth),
    )


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a ``manifest.csv`` written by :func:`write_fetch_result`.

    Unlike a bare ``pd.read_csv``, empty labels stay ``''`` (not NaN) and labels such as
    ``"0"`` stay strings.

    Parameters
    ----------
    path : Path
        The CSV file.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MANIFEST_COLUMNS`; ``width``/``height`` are ``int64``, the rest ``str``.
    """
    df = pd.read_csv(path, dtype={c: str for c in _MANIFEST_STR_COLUMNS}, keep_default_na=False)
    _check_columns(df, MANIFEST_COLUMNS, f"manifest {path}")
    return df.astype({"width": "int64", "height": "int64"})
