"""evaluate: score one variant over the eps sweep, choose the eps to act on, and list its pairs for review.

Inputs are one variant's cluster outputs (:mod:`neardup.contract`); outputs are the variant's metrics (the
same names in every variant, so experiments compare), the plot data over the sweep, and, at the chosen
eps, the groups and the review queue.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd

from neardup.contract import (DIGITS, GROUPS, MANIFEST, PAIRS, PLANTED, QUEUE, REASON, SKIPPED, STATS, groups_at,
                              read_groups, read_outcomes, read_pairs, read_table, read_truth, write_table)
from neardup.evaluate.eps import GUARD_COLUMNS, growth_sweep, pick_eps
from neardup.evaluate.metrics import average_precision, pair_sweep, recall_at_precision, sweep_scores, truth_pairs
from neardup.evaluate.queue import build_queue, capped_group_pairs, load_reviews, reviewed_precision
from neardup.layout import CURVES, Layout
from neardup.params import EvaluateParams, params_from_dict

log = logging.getLogger(__name__)


def planted_summary(outcomes: pd.DataFrame, eps: float) -> dict:
    """Recall of the planted copies overall and per transform (``recall_<name>``), and the share
    landing with an unrelated image, at one eps; empty without copies."""
    at = groups_at(outcomes, eps)
    if not len(at):
        return {}
    summary = {"planted_recall": float(at["found"].mean()),
               "planted_with_unrelated": float(at["with_unrelated"].mean())}
    for transform, rows in at.groupby("transform"):
        summary[f"recall_{transform}"] = float(rows["found"].mean())
    return summary


def _with_sets(groups: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """``groups`` with each image's ``set`` (from the manifest)."""
    set_of = manifest.set_index(manifest["id"].astype(str))["set"].astype(str)
    return groups.assign(set=set_of.reindex(groups["id"].astype(str)).to_numpy())


def cross_set_groups(groups: pd.DataFrame, manifest: pd.DataFrame) -> int:
    """How many groups hold images of two or more sets (leakage between them)."""
    if not len(groups):
        return 0
    return int((_with_sets(groups, manifest).groupby("group")["set"].nunique() > 1).sum())


def overlap_matrix(groups: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """How many images of each set have a duplicate in each set.

    Returns
    -------
    DataFrame, shape (n_sets, n_sets), index and columns the manifest's set names (sorted): cell
    (A, B) counts the images of A in a group holding another image of B (the diagonal: another
    image of A itself). Off the diagonal, that is leakage between the sets.
    """
    sets = sorted(manifest["set"].astype(str).unique())
    out = pd.DataFrame(0, index=pd.Index(sets, name="images of"), columns=pd.Index(sets, name="with a duplicate in"))
    if not len(groups):
        return out
    members = _with_sets(groups, manifest)
    per_group = members.groupby(["group", "set"]).size().unstack(fill_value=0).reindex(columns=sets, fill_value=0)
    for a in sets:
        mine = members[members["set"] == a]
        if not len(mine):
            continue
        counts = per_group.loc[mine["group"].to_numpy()].to_numpy().copy()  # (n_images_of_a, n_sets)
        counts[:, sets.index(a)] -= 1  # not the image itself
        out.loc[a] = (counts > 0).sum(axis=0)
    return out


def _planted_sweep(outcomes: pd.DataFrame, eps_values) -> pd.DataFrame:
    rows = [{"eps": float(e), **planted_summary(outcomes, e)} for e in sorted(eps_values)]
    return pd.DataFrame(rows)[["eps", "planted_recall", "planted_with_unrelated"]] if len(outcomes) else \
        pd.DataFrame({"eps": sorted(eps_values)})


def _rounded(metrics: dict) -> dict:
    """Floats rounded to :data:`DIGITS` places, NaN left out (JSON has no NaN)."""
    return {k: (round(v, DIGITS) if isinstance(v, float) else v) for k, v in metrics.items()
            if not (isinstance(v, float) and math.isnan(v))}


def evaluate_variant(variant: str, *, dataset: Path, plants_truth: Path, clusters: Path, reviews_path: Path,
                     params: EvaluateParams):
    """Score one variant over the sweep.

    Parameters
    ----------
    variant : str
        The variant key (``<model>_<size>`` or a hash method).
    dataset : Path
        The fetch stage's folder (manifest, skipped list, ground truth).
    plants_truth : Path
        The plant stage's ``truth.csv``.
    clusters : Path
        This variant's cluster folder.
    reviews_path : Path
        The reviewed-pairs CSV (may be missing).
    params : EvaluateParams
        The ``evaluate`` params: the rule that chooses the eps (:mod:`neardup.evaluate.eps`) and
        ``max_queue``, the most pairs the review queue holds (closest first). The eps sweep is the
        one the cluster stage ran (its ``stats.json``).

    Returns
    -------
    metrics : dict
        Flat metrics (the same names in every variant) plus ``planted`` (recall per transform),
        ``overlap`` (set x set) and ``dataset`` (image counts).
    sweep : DataFrame, one row per eps
    at : DataFrame, the groups at the chosen eps
    queue : DataFrame, the review queue at the chosen eps
    reason : str, why this eps (a sentence, then a markdown table judging each eps)
    """
    manifest = read_table(dataset / MANIFEST)
    truth = read_truth(dataset)
    stats = json.loads((clusters / STATS).read_text())
    eps_values = stats["eps"]
    groups, pairs, outcomes = (read_groups(clusters / GROUPS), read_pairs(clusters / PAIRS),
                               read_outcomes(clusters / PLANTED))
    present = set(manifest["id"]) - set(stats["skipped_ids"])
    true = None if truth is None else truth_pairs(truth, present=present)
    sweep = sweep_scores(groups, eps_values, true).merge(_planted_sweep(outcomes, eps_values), on="eps")
    sweep = sweep.merge(pair_sweep(pairs, eps_values, true), on="eps")
    proven = pairs.loc[pairs["verified"] == 1, ["a", "b"]].itertuples(index=False)
    sweep = sweep.merge(growth_sweep(groups, manifest, eps_values, present=present, proven=proven), on="eps")
    eps, reason = pick_eps(sweep, params, has_truth=true is not None)
    chosen = sweep[sweep["eps"] == eps].iloc[0]
    at = groups_at(groups, eps)
    proposed, left_out = capped_group_pairs(at, manifest, variant=variant, pairs=pairs, max_pairs=params.max_queue)
    queue = build_queue(proposed, load_reviews(reviews_path))
    if left_out:
        log.warning("%s: the review queue holds the closest %d of %d pairs at eps %g; %d left out (raise "
                    "evaluate.max_queue to see more)", variant, len(queue), len(queue) + left_out, eps, left_out)
    metrics = {k: float(chosen[k]) for k in ("eps", "precision", "recall", "f1", "pair_precision", "pair_recall",
                                             "pair_f1", "grouped_share", "pairs_per_image")}
    # AP over each image's nearest neighbours: the same candidate pairs whatever the eps sweep
    nearest = pairs[pairs["nearest"] == 1]
    metrics.update(ap=average_precision(nearest, true) if true is not None else math.nan,
                   recall_at_p90=recall_at_precision(sweep, min_precision=0.9))
    metrics.update({k: int(chosen[k]) for k in ("n_groups", "n_pairs", "n_label_conflicts", "largest_group")})
    metrics.update(input_size=stats["input_size"], n_embedded=stats["n_embedded"],
                   n_skipped=len(stats["skipped_ids"]), n_queue_left_out=int(left_out))
    planted = planted_summary(outcomes, eps)
    metrics.update({k: v for k, v in planted.items() if not k.startswith("recall_")})
    metrics.update({k: v for k, v in reviewed_precision(queue, n_total=len(queue) + left_out).items()
                    if k != "n_pairs"})
    metrics["search"] = stats["search"]
    if "search_recall" in stats:  # the approximate search's recall at the chosen eps (else at the largest)
        recall = stats.get("search_recall_by_eps", {}).get(f"{float(eps):g}", stats["search_recall"])
        if recall is not None:
            metrics["search_recall"] = recall
    metrics["n_cross_set_groups"] = cross_set_groups(at, manifest)
    metrics["n_to_remove"] = len(at) - int(at["group"].nunique()) if len(at) else 0  # all but a keeper per group
    metrics = _rounded(metrics)
    if planted:
        metrics["planted"] = _rounded({k[len("recall_"):]: v for k, v in planted.items() if k.startswith("recall_")})
    overlap = overlap_matrix(at, manifest)
    metrics["overlap"] = {a: {b: int(n) for b, n in row.items()} for a, row in overlap.iterrows()}
    n_planted = len(read_table(plants_truth)) if plants_truth.is_file() else 0
    metrics["dataset"] = {"n_images": len(manifest), "n_skipped": len(read_table(dataset / SKIPPED)),
                          "n_truth_copies": 0 if truth is None else len(truth), "n_planted": n_planted}
    log.info("%s: eps %g (%s): %s", variant, eps, reason.splitlines()[0],
             {k: v for k, v in metrics.items() if not isinstance(v, dict)})
    return metrics, sweep.drop(columns=GUARD_COLUMNS), at, queue, reason


def write_variant(variant: str, layout: Layout, *, metrics: dict, sweep: pd.DataFrame, at: pd.DataFrame,
                  queue: pd.DataFrame, reason: str) -> None:
    """Write one variant's outputs in ``layout``: its metrics (JSON), its curves over the sweep
    (:data:`neardup.layout.CURVES`) and, in its evaluation folder, the groups at the chosen eps, the
    review queue and the reason for the eps."""
    path = layout.metrics(variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    planted = metrics.get("planted", {})
    curves = {"eps": sweep, "pr": sweep[["recall", "precision", "eps"]].dropna(),
              "transforms": pd.DataFrame({"transform": list(planted), "recall": list(planted.values())})}
    for curve in CURVES:
        write_table(curves[curve], layout.curve(curve, variant))
    out = layout.evaluation(variant)
    out.mkdir(parents=True, exist_ok=True)
    write_table(at, out / GROUPS)
    write_table(queue, out / QUEUE)
    (out / REASON).write_text(reason + "\n")


def run(params: dict, layout: Layout, *, variant: str) -> None:
    """The evaluate stage: :func:`evaluate_variant` on ``variant``'s clusters in ``layout`` (with the
    project's reviews), then :func:`write_variant`. Reads the ``evaluate`` group of ``params``."""
    results = evaluate_variant(variant, dataset=layout.dataset, plants_truth=layout.plants_truth,
                               clusters=layout.clusters(variant), reviews_path=layout.path("reviews"),
                               params=params_from_dict(params, "evaluate"))
    write_variant(variant, layout, **dict(zip(("metrics", "sweep", "at", "queue", "reason"), results)))
