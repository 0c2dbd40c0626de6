"""Reading the data contract's tables and naming runs (shared by evaluate, render and the review tool)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def run_key(model: str, size: int | None = None) -> str:
    """Name of one run: file stem and metrics key, e.g. ``efficientnet-lite0_224`` or ``phash``."""
    return model if size is None else f"{model}_{size}"


def run_keys(models, sizes, hashes=()) -> list[str]:
    """Every run of the sweep: each model at each size, then each hash baseline."""
    return [run_key(m, s) for m in models for s in sizes] + list(hashes)


def read_table(path) -> pd.DataFrame:
    """Read a CSV of the data contract with every column as str ('' for empty cells)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read_truth(dataset: Path) -> pd.DataFrame | None:
    """The dataset's own ground truth (the demo's planted duplicates), or None."""
    path = dataset / "truth.csv"
    truth = read_table(path) if path.is_file() else None
    return truth if truth is not None and len(truth) else None


def read_groups(path: Path) -> pd.DataFrame:
    groups = read_table(path)
    groups["eps"] = groups["eps"].astype(float)
    groups["group"] = groups["group"].astype(int)
    return groups




def read_queue(path) -> pd.DataFrame:
    """The review queue, ``distance`` as float (NaN for a pair only chained into its group)."""
    queue = read_table(path)
    queue["distance"] = pd.to_numeric(queue["distance"], errors="coerce")
    return queue
