"""Assemble the evaluate stage's outputs: flat metrics per model/size and the eps-sweep plot data."""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pandas as pd

from neardup.embedding import Embeddings
from neardup.evaluation import choose_eps, sweep_scores, truth_pairs

log = logging.getLogger(__name__)


def run_key(model: str, size: int) -> str:
    """Name of one (model, size) run: file stem and metrics key, e.g. ``efficientnet-lite0_224``."""
    return f"{model}_{size}"


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV of the data contract with every column as str ('' for empty cells)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read_truth(dataset: Path) -> pd.DataFrame | None:
    """The planted-duplicate truth table, or None when the dataset has no ground truth."""
    path = dataset / "truth.csv"
    if not path.is_file():
        return None
    truth = read_table(path)
    return truth if len(truth) else None


def read_groups(path: Path) -> pd.DataFrame:
    groups = read_table(path)
    groups["eps"] = groups["eps"].astype(float)
    groups["group"] = groups["group"].astype(int)
    return groups


def evaluate_all(dataset: Path, clusters: Path, embeddings: Path, *, models, sizes, eps_values,
                 min_precision: float = 0.0, fallback_eps: float = 0.1):
    """Score every (model, size) of the sweep.

    Returns
    -------
    metrics : dict
        ``{"dataset": {...}, "<model>_<size>": {"eps", "precision", "recall", "f1", "n_groups",
        "n_pairs", "n_label_conflicts", "images_per_second", "n_embedded", "n_skipped"}}``
    sweeps : dict of str -> DataFrame
        Per run key, one row per eps (columns of :func:`neardup.evaluation.sweep_scores`).
    """
    manifest = read_table(dataset / "manifest.csv")
    skipped = read_table(dataset / "skipped.csv")
    truth = read_truth(dataset)
    metrics = {"dataset": {"n_images": len(manifest), "n_skipped": len(skipped),
                           "n_planted": 0 if truth is None else len(truth)}}
    sweeps = {}
    for model in models:
        for size in sizes:
            key = run_key(model, size)
            emb = Embeddings.load(embeddings / f"{key}.npz")
            groups = read_groups(clusters / f"{key}.csv")
            pairs = None if truth is None else truth_pairs(truth, present=emb.ids)
            sweep = sweep_scores(groups, eps_values, pairs)
            eps = choose_eps(sweep, min_precision=min_precision, fallback_eps=fallback_eps)
            chosen = sweep[sweep["eps"] == eps].iloc[0].to_dict()
            entry = {k: round(float(chosen[k]), 4) for k in ("eps", "precision", "recall", "f1")}
            entry.update({k: int(chosen[k]) for k in ("n_groups", "n_pairs", "n_label_conflicts")})
            entry.update(images_per_second=round(emb.images_per_second, 1), n_embedded=len(emb.ids),
                         n_skipped=len(emb.skipped))
            metrics[key] = {k: v for k, v in entry.items() if not (isinstance(v, float) and math.isnan(v))}
            sweeps[key] = sweep
            log.info("%s: %s", key, metrics[key])
    return metrics, sweeps


def write_metrics(metrics: dict, sweeps: dict, *, metrics_path: Path, plots_dir: Path) -> None:
    """Write ``metrics.json`` and one eps-sweep CSV per run key under ``plots_dir``."""
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if plots_dir.exists():
        shutil.rmtree(plots_dir)
    plots_dir.mkdir(parents=True)
    for key, sweep in sweeps.items():
        sweep.to_csv(plots_dir / f"{key}.csv", index=False)
