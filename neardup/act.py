"""act: lists to act on from one run's groups: keep / remove lists and leakage-safe folds.

Every function takes the groups of one run at one eps (columns ``group, id``, as in
``groups.csv``) and the dataset manifest (``id, set, label, label_name, width, height``), and is
deterministic: the same inputs give the same tables.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from neardup.contract import display_labels

log = logging.getLogger(__name__)

KEEP_COLUMNS = ["group", "id", "set", "label", "n_members"]
REMOVE_COLUMNS = ["group", "id", "set", "label", "keeper", "keeper_set"]
FOLD_COLUMNS = ["id", "set", "label", "group", "fold"]


def choose_keepers(groups: pd.DataFrame, manifest: pd.DataFrame, *, prefer_set: str) -> tuple[pd.DataFrame,
                                                                                                     pd.DataFrame]:
    """One image to keep per group; the others to remove.

    The rule, in order: an image of ``prefer_set`` (when the group has one), then the largest image
    (width x height), then the smallest id.

    Returns
    -------
    keep : DataFrame ``group, id, set, label, n_members``, one row per group
    remove : DataFrame ``group, id, set, label, keeper, keeper_set``, one row per other member
    """
    info = manifest.set_index(manifest["id"].astype(str))
    labels = display_labels(manifest)
    members = groups[["group", "id"]].astype({"id": str}).copy()
    members["set"] = info["set"].reindex(members["id"]).astype(str).to_numpy()
    members["label"] = labels.reindex(members["id"]).to_numpy()
    members["pixels"] = (info["width"].astype(int) * info["height"].astype(int)).reindex(members["id"]).to_numpy()
    members["not_preferred"] = (members["set"] != prefer_set) if prefer_set else False
    ranked = members.sort_values(["group", "not_preferred", "pixels", "id"], ascending=[True, True, False, True],
                                 kind="stable")
    first = ~ranked["group"].duplicated()
    keep = ranked[first].assign(n_members=ranked.groupby("group")["id"].transform("size")[first])
    keeper = keep.set_index("group")
    remove = ranked[~first].assign(keeper=lambda t: keeper["id"].reindex(t["group"]).to_numpy(),
                                   keeper_set=lambda t: keeper["set"].reindex(t["group"]).to_numpy())
    return keep[KEEP_COLUMNS].reset_index(drop=True), remove[REMOVE_COLUMNS].reset_index(drop=True)


def leakage_safe_folds(manifest: pd.DataFrame, groups: pd.DataFrame, *, n_splits: int, seed: int) -> pd.DataFrame:
    """Cross-validation folds, stratified by label, in which every duplicate group sits in one fold.

    Uses scikit-learn's ``StratifiedGroupKFold`` (shuffled with ``seed``): an image in a duplicate
    group gets the group as its CV group, every other image a group of its own.

    Returns
    -------
    DataFrame ``id, set, label, group, fold`` with one row per manifest image, sorted by id;
    ``group`` is the duplicate group (-1 for images without duplicates).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")
    images = manifest.assign(id=manifest["id"].astype(str)).sort_values("id", ignore_index=True)
    if len(images) < n_splits:
        raise ValueError(f"{len(images)} images cannot be split into {n_splits} folds; lower act.n_splits")
    group_of = dict(zip(groups["id"].astype(str), groups["group"].astype(int)))
    dup_group = np.array([group_of.get(i, -1) for i in images["id"]])
    cv_group = np.where(dup_group >= 0, dup_group, dup_group.max(initial=0) + 1 + np.arange(len(images)))
    labels = display_labels(images).to_numpy()
    folds = np.full(len(images), -1)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        for fold, (_, test) in enumerate(splitter.split(np.zeros(len(images)), labels, cv_group)):
            folds[test] = fold
    return pd.DataFrame({"id": images["id"], "set": images["set"].astype(str), "label": labels,
                         "group": dup_group, "fold": folds})[FOLD_COLUMNS]


def fold_balance(folds: pd.DataFrame) -> pd.DataFrame:
    """Share of each label in each fold minus its share overall; shape (n_folds, n_labels)."""
    share = pd.crosstab(folds["fold"], folds["label"], normalize="index")
    overall = folds["label"].value_counts(normalize=True)
    return share - overall.reindex(share.columns)
