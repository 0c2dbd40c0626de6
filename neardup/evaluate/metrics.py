"""Pairwise precision / recall / F1 of duplicate groups against known duplicates.

Everything is scored on unordered pairs ``(a, b)`` with ``a < b``: a group of n images proposes
n * (n - 1) / 2 pairs, and a truth group (an original and its planted copies) holds the same.
Pairs inside groups are counted, not listed, so a giant chained group costs no memory.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from neardup.contract import groups_at, label_conflict_groups


def truth_pairs(truth: pd.DataFrame, *, present=None) -> set[tuple[str, str]]:
    """Unordered duplicate pairs from a truth table (columns ``id, original, transform``).

    Every copy duplicates its original and every other copy of the same original.
    ``present`` (an iterable of ids) restricts the pairs to images that were embedded.
    """
    keep = None if present is None else set(map(str, present))
    members: dict[str, set[str]] = {}
    for copy, original in zip(truth["id"].astype(str), truth["original"].astype(str)):
        members.setdefault(original, {original}).add(copy)
    pairs = set()
    for group in members.values():
        if keep is not None:
            group = group & keep
        pairs.update(tuple(sorted(p)) for p in itertools.combinations(sorted(group), 2))
    return pairs


def score_groups(groups: pd.DataFrame, true_pairs: set[tuple[str, str]]) -> dict[str, float]:
    """Pairwise precision, recall and F1 of one grouping.

    Parameters
    ----------
    groups : DataFrame with columns ``group, id`` (one eps)
    true_pairs : set of (a, b), a < b

    Returns
    -------
    dict with ``precision, recall, f1, tp, n_pairs, n_true_pairs, n_groups``. Precision is 1.0
    when nothing is proposed (no false pairs); recall is 1.0 when there is nothing to find.
    """
    group_of = dict(zip(groups["id"].astype(str), groups["group"]))
    sizes = groups.groupby("group").size().to_numpy()
    n_pairs = int((sizes * (sizes - 1) // 2).sum())
    tp = sum(1 for a, b in true_pairs if a in group_of and group_of[a] == group_of.get(b))
    precision = tp / n_pairs if n_pairs else 1.0
    recall = tp / len(true_pairs) if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "n_pairs": n_pairs,
            "n_true_pairs": len(true_pairs), "n_groups": int(len(sizes))}


def sweep_scores(groups: pd.DataFrame, eps_values, true_pairs) -> pd.DataFrame:
    """One row per eps: ``eps, precision, recall, f1, n_groups, n_pairs, n_label_conflicts``.

    ``true_pairs`` None (no ground truth) leaves precision / recall / f1 as NaN.
    """
    rows = []
    for eps in sorted(eps_values):
        at = groups_at(groups, eps)
        if true_pairs is None:
            sizes = at.groupby("group").size().to_numpy()
            row = {"precision": math.nan, "recall": math.nan, "f1": math.nan,
                   "n_groups": int(len(sizes)), "n_pairs": int((sizes * (sizes - 1) // 2).sum())}
        else:
            score = score_groups(at, true_pairs)
            row = {k: score[k] for k in ("precision", "recall", "f1", "n_groups", "n_pairs")}
        row["n_label_conflicts"] = len(label_conflict_groups(at))
        rows.append({"eps": float(eps), **row})
    return pd.DataFrame(rows)


def pair_sweep(pairs: pd.DataFrame, eps_values, true_pairs) -> pd.DataFrame:
    """Pair-level scores per eps: the candidate pairs at distance <= eps, before any grouping.

    Parameters
    ----------
    pairs : DataFrame with columns ``a, b, distance`` (unordered, ``a < b``)
    eps_values : iterable of float
    true_pairs : set of (a, b), or None (no ground truth: NaN scores)

    Returns
    -------
    DataFrame with columns ``eps, pair_precision, pair_recall, pair_f1, n_candidate_pairs``.
    """
    distance = pairs["distance"].to_numpy(float)
    hit = (np.fromiter(((a, b) in true_pairs for a, b in zip(pairs["a"].astype(str), pairs["b"].astype(str))),
                       dtype=bool, count=len(pairs)) if true_pairs is not None else None)
    rows = []
    for eps in sorted(eps_values):
        inside = distance <= eps + 1e-12
        row = {"eps": float(eps), "pair_precision": math.nan, "pair_recall": math.nan, "pair_f1": math.nan,
               "n_candidate_pairs": int(inside.sum())}
        if hit is not None:
            tp = int(hit[inside].sum())
            p = tp / row["n_candidate_pairs"] if row["n_candidate_pairs"] else 1.0
            r = tp / len(true_pairs) if true_pairs else 1.0
            row.update(pair_precision=p, pair_recall=r, pair_f1=2 * p * r / (p + r) if p + r > 0 else 0.0)
        rows.append(row)
    return pd.DataFrame(rows)


def average_precision(pairs: pd.DataFrame, true_pairs: set[tuple[str, str]]) -> float:
    """Pair-level micro average precision (as in the DISC21 copy-detection benchmark).

    Candidate pairs are ranked by distance (closest first); AP is the mean over all true pairs of
    the precision at the rank where each is retrieved, a true pair never proposed counting 0.

    Parameters
    ----------
    pairs : DataFrame with columns ``a, b, distance`` (unordered, ``a < b``)
    true_pairs : set of (a, b), a < b

    Returns
    -------
    float in [0, 1]; NaN when there are no true pairs.
    """
    if not true_pairs:
        return math.nan
    ranked = pairs.sort_values(["distance", "a", "b"], kind="stable")
    hits = np.fromiter(((a, b) in true_pairs for a, b in zip(ranked["a"].astype(str), ranked["b"].astype(str))),
                       dtype=bool, count=len(ranked))
    if not hits.any():
        return 0.0
    precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hit.sum() / len(true_pairs))


def recall_at_precision(sweep: pd.DataFrame, *, min_precision: float = 0.9) -> float:
    """Best recall over the eps sweep among eps with precision >= ``min_precision`` (0 if none)."""
    ok = sweep.dropna(subset=["precision"])
    ok = ok[ok["precision"] >= min_precision]
    return float(ok["recall"].max()) if len(ok) else (math.nan if sweep["precision"].isna().all() else 0.0)
