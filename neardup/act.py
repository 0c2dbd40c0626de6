"""act: lists to act on from one variant's groups: keep / remove lists and leakage-safe folds.

Every function takes the groups of one variant at one eps (columns ``group, id``, as in
``groups.csv``) and the dataset manifest (``id, set, label, label_name, width, height``), and is
deterministic: the same inputs give the same tables.
"""
from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pandas as pd

from neardup.contract import (FOLD_COLUMNS, GROUPS, KEEP_COLUMNS, REMOVE_COLUMNS, display_labels, empty_frame,
                              read_groups, read_manifest, read_table, primary_variant, write_table)
from neardup.layout import Layout
from neardup.params import ParamsError, params_from_dict

log = logging.getLogger(__name__)


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
    members = groups[["group", "id"]].astype({"id": str}).copy()
    twice = members["id"][members["id"].duplicated()]
    if len(twice):  # the groups of several eps at once: a keeper would be removed as another's copy
        raise ValueError(f"choose_keepers: image {twice.iloc[0]!r} is in the groups "
                         f"{int((members['id'] == twice.iloc[0]).sum())} times; give the "
                         f"groups of one eps (each image in one group at most)")
    info = manifest.set_index(manifest["id"].astype(str))
    labels = display_labels(manifest)
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
    keep, remove = keep[KEEP_COLUMNS].reset_index(drop=True), remove[REMOVE_COLUMNS].reset_index(drop=True)
    check_lists(keep, remove)
    return keep, remove


def check_lists(keep: pd.DataFrame, remove: pd.DataFrame) -> None:
    """The lists' invariants, checked where they are made (an error here is a bug, never the user's):
    no id twice in either list, no keeper removed, one keeper per group, and each removed image's
    keeper is the keeper of its group."""
    problems = []
    if keep["id"].duplicated().any() or remove["id"].duplicated().any():
        problems.append("an id is listed twice")
    if set(keep["id"]) & set(remove["id"]):
        problems.append("a keeper is in the remove list")
    if keep["group"].duplicated().any():
        problems.append("a group has two keepers")
    keeper = dict(zip(keep["group"], keep["id"]))
    if any(keeper.get(g) != k for g, k in zip(remove["group"], remove["keeper"])):
        problems.append("a removed image's keeper is not its group's keeper")
    if problems:
        raise RuntimeError(f"keep/remove lists broken ({'; '.join(problems)}): please report this bug")


def leakage_safe_folds(manifest: pd.DataFrame, groups: pd.DataFrame, *, n_splits: int, seed: int) -> pd.DataFrame:
    """Cross-validation folds, stratified by label, in which every duplicate group sits in one fold.

    Uses scikit-learn's ``StratifiedGroupKFold`` (shuffled with ``seed``): an image in a duplicate
    group gets the group as its CV group, every other image a group of its own.

    Returns
    -------
    DataFrame ``id, set, label, group, fold`` with one row per manifest image, sorted by id;
    ``group`` is the duplicate group (-1 for images without duplicates).

    Raises
    ------
    ParamsError
        Naming ``act.n_splits`` when the images (a duplicate group counting once) cannot fill that many folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if n_splits < 2:
        raise ParamsError(f"act.n_splits must be >= 2, got {n_splits}")
    images = manifest.assign(id=manifest["id"].astype(str)).sort_values("id", ignore_index=True)
    group_of = dict(zip(groups["id"].astype(str), groups["group"].astype(int)))
    dup_group = np.array([group_of.get(i, -1) for i in images["id"]], dtype=int)
    cv_group = np.where(dup_group >= 0, dup_group, dup_group.max(initial=0) + 1 + np.arange(len(images)))
    n_units = len(np.unique(cv_group))  # a duplicate group goes to one fold whole
    if n_units < n_splits:
        what = f"lower act.n_splits to at most {n_units}" if n_units >= 2 else "folds need 2 or more distinct images"
        raise ParamsError(f"act.n_splits is {n_splits} but the {len(images)} image(s) can fill only {n_units} "
                          f"fold(s) (a duplicate group stays in one fold): {what}")
    labels = display_labels(images).to_numpy()
    strata = labels
    if len(labels) and pd.Series(labels).value_counts().max() < n_splits:
        log.warning("act: every label has fewer than act.n_splits (%d) images; the folds are not stratified "
                    "by label", n_splits)
        strata = np.zeros(len(labels), int)  # scikit-learn refuses to stratify such labels at all
    folds = np.full(len(images), -1)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        for fold, (_, test) in enumerate(splitter.split(np.zeros(len(images)), strata, cv_group)):
            folds[test] = fold
    return pd.DataFrame({"id": images["id"], "set": images["set"].astype(str), "label": labels,
                         "group": dup_group, "fold": folds})[FOLD_COLUMNS]


def fold_balance(folds: pd.DataFrame) -> pd.DataFrame:
    """Share of each label in each fold minus its share overall; shape (n_folds, n_labels)."""
    share = pd.crosstab(folds["fold"], folds["label"], normalize="index")
    overall = folds["label"].value_counts(normalize=True)
    return share - overall.reindex(share.columns)


def primary_block(variant: str, metrics: dict) -> dict:
    """The primary variant's metrics under names that do not depend on the variant, in one top-level
    ``primary`` block: the variant's name as ``variant``, its flat metrics and its per-transform planted
    recall (``planted``). Experiments on other models or sizes then compare column by column
    (``dvc metrics diff``, ``dvc exp show``), and as no other file has these names, ``dvc exp show``
    heads the columns ``primary.ap`` and so on, without the file's path."""
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    planted = {"planted": metrics["planted"]} if "planted" in metrics else {}
    return {"primary": {"variant": variant, **flat, **planted}}


def run(params: dict, layout: Layout, *, folds_required: bool = True) -> None:
    """The act stage, on the primary variant (the first model at the first size) of ``layout``:
    ``keep`` / ``remove`` (one keeper per duplicate group, by ``act.prefer_set``, then the largest
    image, then the smallest id) and ``folds`` (stratified by label, every duplicate group inside one
    fold); and the primary variant's metrics and curves under names that do not depend on the variant
    (``primary``), so ``dvc metrics diff`` / ``dvc plots diff`` compare experiments on other models or
    sizes. Reads ``act`` and ``embed.models`` / ``embed.sizes``.

    Folds the images cannot fill (``act.n_splits`` above the distinct images and groups) stop the stage
    with a one-line error naming the param, after the lists are written; with ``folds_required`` False
    (``find``, where nobody chose ``n_splits``) a warning says so and ``folds`` is left empty."""
    act, embed = params_from_dict(params, "act"), params_from_dict(params, "embed")
    variant = primary_variant(embed.models, embed.sizes)
    manifest = read_manifest(layout.manifest())
    if act.prefer_set and act.prefer_set not in set(manifest["set"]):
        raise ParamsError(f"act.prefer_set {act.prefer_set!r} is not a set of the dataset: "
                          f"{sorted(set(manifest['set']))}")
    at = read_groups(layout.evaluation(variant) / GROUPS)
    keep, remove = choose_keepers(at, manifest, prefer_set=act.prefer_set)
    for table, name in ((keep, "keep"), (remove, "remove")):
        write_table(table, layout.path(name))
    block = primary_block(variant, json.loads(layout.metrics(variant).read_text()))
    layout.primary_metrics.parent.mkdir(parents=True, exist_ok=True)
    layout.primary_metrics.write_text(json.dumps(block, indent=2, sort_keys=True) + "\n")
    for curve in ("eps", "pr"):
        write_table(read_table(layout.curve(curve, variant)), layout.primary_curve(curve))
    try:
        folds = leakage_safe_folds(manifest, at, n_splits=act.n_splits, seed=act.seed)
    except ParamsError as exc:
        if folds_required:
            raise
        log.warning("no folds: %s", exc)
        folds = empty_frame(FOLD_COLUMNS)
    write_table(folds, layout.path("folds"))
    worst = float(fold_balance(folds).abs().max().max()) if len(folds) else 0.0
    log.info("%d groups: keep %d, remove %d; %d folds, largest label-share deviation %.3f",
             at["group"].nunique(), len(keep), len(remove), act.n_splits, worst)
