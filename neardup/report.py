"""Assemble the evaluate stage's outputs: flat metrics per run, plot data and the review queue."""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from neardup.embedding import Embeddings
from neardup.evaluation import (average_precision, choose_eps, pair_sweep, recall_at_precision, sweep_scores,
                                truth_pairs)
from neardup.leakage import overlap_matrix
from neardup.planting import planted_summary
from neardup.review import build_queue, group_pairs_table, load_reviews, reviewed_precision
from neardup.tables import read_groups, read_table, read_truth

log = logging.getLogger(__name__)


def _planted_sweep(outcomes: pd.DataFrame, eps_values) -> pd.DataFrame:
    rows = [{"eps": float(e), **planted_summary(outcomes, e)} for e in sorted(eps_values)]
    return pd.DataFrame(rows)[["eps", "planted_recall", "planted_with_unrelated"]] if len(outcomes) else \
        pd.DataFrame({"eps": sorted(eps_values)})


def pick_eps(sweep: pd.DataFrame, *, has_truth: bool, min_precision: float, max_unrelated: float,
             fallback_eps: float) -> tuple[float, str]:
    """The eps to act on and why (a sentence for the quality report).

    With ground truth: best F1 among eps with precision >= ``min_precision``. Without it but with
    planted copies: the eps finding most copies while at most ``max_unrelated`` of them land with an
    unrelated image (of several, the largest: it finds most real duplicates). Otherwise ``fallback_eps``.
    """
    if has_truth:
        eps = choose_eps(sweep, min_precision=min_precision, fallback_eps=fallback_eps)
        return eps, f"best pairwise F1 on the ground truth among eps with precision >= {min_precision:g}"
    if "planted_recall" in sweep and sweep["planted_recall"].notna().any():
        ok = sweep[sweep["planted_with_unrelated"] <= max_unrelated]
        if len(ok):
            best = ok.sort_values(["planted_recall", "eps"], ascending=[False, False]).iloc[0]
            return float(best["eps"]), (f"most planted copies found (the largest such eps) while at most "
                                        f"{max_unrelated:.0%} of them land in a group with an unrelated image")
    eps = choose_eps(sweep.assign(f1=math.nan), fallback_eps=fallback_eps)
    return eps, "evaluate.fallback_eps (no ground truth and no usable planted copies)"


def _scored_distance(pairs: pd.DataFrame):
    """Distance lookup from the run's scored pairs (NaN for a pair only chained into its group)."""
    known = dict(zip(zip(pairs["a"], pairs["b"]), pairs["distance"]))

    def distance(a_ids, b_ids):
        return np.array([known.get((a, b), np.nan) for a, b in zip(a_ids, b_ids)], dtype=float)

    return distance


def evaluate_run(run: str, *, manifest, truth, embeddings: Path, clusters: Path, reviews, eps_values,
                 min_precision: float, max_unrelated: float, fallback_eps: float):
    """Score one run. Returns ``(metrics, sweep, queue, reason)``."""
    emb = Embeddings.load(embeddings / f"{run}.npz")
    groups = read_groups(clusters / run / "groups.csv")
    pairs = read_table(clusters / run / "pairs.csv").astype({"distance": float})
    outcomes = read_table(clusters / run / "planted.csv")
    outcomes = outcomes.astype({"eps": float}).assign(found=outcomes["found"] == "True",
                                                      with_unrelated=outcomes["with_unrelated"] == "True")
    true = None if truth is None else truth_pairs(truth, present=emb.ids)
    sweep = sweep_scores(groups, eps_values, true).merge(_planted_sweep(outcomes, eps_values), on="eps")
    sweep = sweep.merge(pair_sweep(pairs, eps_values, true), on="eps")
    eps, reason = pick_eps(sweep, has_truth=true is not None, min_precision=min_precision,
                           max_unrelated=max_unrelated, fallback_eps=fallback_eps)
    chosen = sweep[sweep["eps"] == eps].iloc[0]
    at = groups[np.isclose(groups["eps"], eps)]
    overlap = overlap_matrix(at, manifest)
    queue = build_queue(group_pairs_table(at, manifest, run=run, distance=_scored_distance(pairs)), reviews)
    metrics = {k: float(chosen[k]) for k in ("eps", "precision", "recall", "f1", "pair_precision", "pair_recall",
                                             "pair_f1")}
    metrics.update(ap=average_precision(pairs, true) if true is not None else math.nan,
                   recall_at_p90=recall_at_precision(sweep, min_precision=0.9))
    metrics.update({k: int(chosen[k]) for k in ("n_groups", "n_pairs", "n_label_conflicts")})
    metrics.update(input_size=emb.input_size, images_per_second=emb.images_per_second, n_embedded=len(emb.ids), n_skipped=len(emb.skipped))
    planted = planted_summary(outcomes, eps)
    metrics.update({k: v for k, v in planted.items() if not k.startswith("recall_")})
    if planted:
        metrics["planted"] = {k[len("recall_"):]: round(v, 4) for k, v in planted.items() if k.startswith("recall_")}
    metrics.update({k: v for k, v in reviewed_precision(queue).items() if k != "n_pairs"})
    search = clusters / run / "search.json"
    if search.is_file():  # the approximate search's recall at the chosen eps (else at the largest)
        stats = json.loads(search.read_text())
        metrics["search"] = stats.get("search")
        by_eps = stats.get("search_recall_by_eps", {})
        recall = by_eps.get(f"{float(eps):g}", stats.get("search_recall"))
        if recall is not None:
            metrics["search_recall"] = recall
    metrics["overlap"] = {a: {b: int(n) for b, n in row.items()} for a, row in overlap.iterrows()}
    clean = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
             if not (isinstance(v, float) and math.isnan(v))}
    return clean, sweep, queue, reason


def evaluate_all(dataset: Path, plants: Path, embeddings: Path, clusters: Path, reviews_path: Path, *, runs,
                 eps_values, min_precision: float = 0.0, max_unrelated: float = 0.02, fallback_eps: float = 0.15):
    """Score every run of the sweep.

    Returns
    -------
    metrics : dict
        ``{"dataset": {...}, "<run>": {eps, precision, recall, f1, ap, recall_at_p90, n_groups, n_pairs,
        n_label_conflicts, images_per_second, n_embedded, n_skipped, planted_recall,
        planted_with_unrelated, planted: {<transform>: recall}, reviewed_precision, n_duplicate,
        n_different, n_unsure, n_pending, precision_lower, precision_upper}}``
    sweeps : dict of run -> DataFrame, one row per eps
    queue : DataFrame, the review queue of every run at its chosen eps
    reasons : dict of run -> why its eps was chosen (a sentence)
    """
    manifest = read_table(dataset / "manifest.csv")
    truth = read_truth(dataset)
    n_planted = len(read_table(plants / "truth.csv")) if (plants / "truth.csv").is_file() else 0
    metrics = {"dataset": {"n_images": len(manifest), "n_skipped": len(read_table(dataset / "skipped.csv")),
                           "n_truth_copies": 0 if truth is None else len(truth), "n_planted": n_planted}}
    reviews = load_reviews(reviews_path)
    sweeps, queues, reasons = {}, [], {}
    for run in runs:
        metrics[run], sweeps[run], queue, reasons[run] = evaluate_run(
            run, manifest=manifest, truth=truth, embeddings=embeddings, clusters=clusters, reviews=reviews,
            eps_values=eps_values, min_precision=min_precision, max_unrelated=max_unrelated,
            fallback_eps=fallback_eps)
        queues.append(queue)
        log.info("%s: %s", run, metrics[run])
    return metrics, sweeps, pd.concat(queues, ignore_index=True), reasons


def write_outputs(metrics: dict, sweeps: dict, queue: pd.DataFrame, reasons: dict, *, metrics_path: Path,
                  plots_dir: Path, queue_path: Path) -> None:
    """Write ``metrics.json``, the plot data (``eps/``, ``pr/``, ``transforms/`` per run, and
    ``chosen_eps.json``: why each run's eps was chosen) and the review queue."""
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if plots_dir.exists():
        shutil.rmtree(plots_dir)
    for sub in ("eps", "pr", "transforms"):
        (plots_dir / sub).mkdir(parents=True)
    (plots_dir / "chosen_eps.json").write_text(json.dumps(reasons, indent=2, sort_keys=True) + "\n")
    for run, sweep in sweeps.items():
        sweep.to_csv(plots_dir / "eps" / f"{run}.csv", index=False)
        sweep[["recall", "precision", "eps"]].dropna().to_csv(plots_dir / "pr" / f"{run}.csv", index=False)
        planted = metrics[run].get("planted", {})
        pd.DataFrame({"transform": list(planted), "recall": list(planted.values())}).to_csv(
            plots_dir / "transforms" / f"{run}.csv", index=False)
    queue_path.parent.mkdir(parents=True, exist_ok=True)
    queue.to_csv(queue_path, index=False)
