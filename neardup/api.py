"""The one-call Python API: ``neardup.find_duplicates(folder)`` for notebooks and scripts.

It variants the pipeline's own stage functions (:func:`neardup.stage.primary_steps`: fetch, plant, embed
and hash the primary variant, cluster, evaluate, act), with the pipeline's defaults (the package's
``params.yaml``); only DVC is left out. Every file is written under ``out`` in the project's layout
(:class:`neardup.layout.Layout`), so every tool that reads a project reads it.
"""
from __future__ import annotations

import copy
import html
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd
import yaml

from neardup.contract import (GROUPS as GROUPS_CSV, OUTPUT_MARKER, PAIRS, QUEUE, REASON, SKIPPED, UserError,
                              read_groups, read_keep, read_manifest, read_pairs, read_queue, read_remove, read_table,
                              primary_variant)
from neardup.cache import user_cache_dir
from neardup.layout import Layout

log = logging.getLogger(__name__)

#: What counts verdicts imported into a ``find`` output folder: the same search, with that folder as ``out``.
RERUN = "neardup find FOLDER --out {out} (or find_duplicates(..., out=...)) again"
#: Params groups ``find_duplicates`` accepts as keyword overrides (fetch comes from its arguments).
GROUPS = ("plant", "embed", "hash", "cluster", "evaluate", "act", "render", "cache", "engine")


def _deep(base: dict, values: Mapping) -> dict:
    """``base`` with ``values`` laid over it; nested dicts merge (``cluster={"verify": {"factor": 0.3}}``
    keeps the other ``verify`` params), anything else is replaced."""
    out = dict(base)
    for key, value in values.items():
        out[key] = _deep(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def _merged(defaults: dict, overrides: Mapping) -> dict:
    out = copy.deepcopy(defaults)
    out["cache"]["dir"] = user_cache_dir()  # not the working folder's .neardup_cache
    for group, values in overrides.items():
        if group not in GROUPS:
            raise UserError(f"unknown params group {group!r} for find_duplicates; use one of {list(GROUPS)} "
                            "(the images and labels are its first arguments)")
        if not isinstance(values, Mapping):
            raise UserError(f"{group} must be a dict of params, e.g. {group}={{...}}, got {values!r}")
        out[group] = _deep(out[group], values)
    return out


@dataclass
class Result:
    """What :func:`find_duplicates` found (the primary variant, at its chosen eps).

    Attributes
    ----------
    groups : DataFrame, columns ``eps, group, id, label, distance``: one row per image in a group
    pairs : DataFrame, columns ``a, b, distance``: the scored pairs within the chosen eps, closest first
    keep, remove : DataFrames: one keeper per group, the other members to remove (``reports/keep.csv``)
    metrics : dict, the variant's metrics (as ``reports/metrics/<variant>.json``)
    reason : str, why this eps (a sentence, then a table judging every eps)
    manifest, skipped : DataFrames, the dataset and what was left out with the reason
    queue : DataFrame, the review queue (``neardup review`` / the HTML report's review view)
    variant : str, the variant key, e.g. ``efficientnet-lite0_auto``
    out : Path, the folder holding every file written (:class:`neardup.layout.Layout`)
    params : dict, the params groups it was found with
    """

    groups: pd.DataFrame
    pairs: pd.DataFrame
    keep: pd.DataFrame
    remove: pd.DataFrame
    metrics: dict
    reason: str
    manifest: pd.DataFrame
    skipped: pd.DataFrame
    queue: pd.DataFrame
    variant: str
    out: Path
    params: dict

    @classmethod
    def read(cls, out: str | os.PathLike, params: dict) -> "Result":
        """The primary variant's result as the stages wrote it under ``out`` with ``params``."""
        layout = Layout.at(out)
        variant = primary_variant(params["embed"]["models"], params["embed"]["sizes"])
        metrics = json.loads(layout.metrics(variant).read_text())
        pairs = read_pairs(layout.clusters(variant) / PAIRS)  # as written, the distances evaluate judged
        pairs = pairs[pairs["distance"] <= metrics["eps"] + 1e-12][["a", "b", "distance"]].reset_index(drop=True)
        evaluation = layout.evaluation(variant)
        return cls(groups=read_groups(evaluation / GROUPS_CSV), pairs=pairs, keep=read_keep(layout.path("keep")),
                   remove=read_remove(layout.path("remove")), metrics=metrics,
                   reason=(evaluation / REASON).read_text().strip(), manifest=read_manifest(layout.manifest()),
                   skipped=read_table(layout.dataset / SKIPPED), queue=read_queue(evaluation / QUEUE),
                   variant=variant, out=Path(out), params=params)

    @property
    def eps(self) -> float:
        return float(self.metrics["eps"])

    def folds(self, n_splits: int | None = None, *, seed: int | None = None) -> pd.DataFrame:
        """Leakage-safe cross-validation folds: stratified by label, every duplicate group in one fold.
        ``n_splits`` and ``seed`` default to the ``act`` params this result was found with
        (``act.n_splits``, ``act.seed``).

        Returns a DataFrame with columns ``id, set, label, group, fold`` (``group`` -1: no duplicate)."""
        from neardup.act import leakage_safe_folds

        act = self.params["act"]
        n_splits, seed = (act["n_splits"] if n_splits is None else n_splits), (act["seed"] if seed is None else seed)
        return leakage_safe_folds(self.manifest, self.groups, n_splits=n_splits, seed=seed)

    def report(self, path: str | os.PathLike | None = None) -> Path:
        """Write the self-contained HTML report (default: the layout's, ``<out>/reports/index.html``)
        and return its path. Verified pairs of the review queue show their proof (agreeing keypoints),
        as in a project's report."""
        from neardup.params import params_from_dict
        from neardup.render.html import write_html_report
        from neardup.verify import queue_matches

        path = Path(path) if path is not None else Layout.at(self.out).path("html")
        render, verify = self.params["render"], params_from_dict(self.params, "cluster").verify
        matches = queue_matches(self.queue, self.manifest, verify, cache_dir=self.params["cache"]["dir"])
        write_html_report(path, metrics={"dataset": self.metrics.get("dataset", {}), self.variant: self.metrics},
                          variants=[self.variant], groups={self.variant: self.groups}, manifest=self.manifest,
                          figures=None,
                          thumb_size=render["thumb_size"], max_groups=render["max_groups"],
                          reasons={self.variant: self.reason}, review_queue=self.queue,
                          max_review_pairs=render["max_pair_figures"], matches=matches,
                          rerun=RERUN.format(out=self.out))
        return path

    def show(self, n: int = 5) -> "Gallery":
        """The first ``n`` groups (label conflicts first, then closest) as thumbnails; in a notebook the
        returned object displays itself inline."""
        from neardup.render.html import CSS, _members, gallery, split_groups

        if not len(self.groups):
            return Gallery("<p>No duplicate groups at the chosen eps.</p>")
        members = _members(self.groups, self.manifest)
        conflicts, closest = split_groups(members, max_groups=n)
        thumbs: dict = {}
        size = int(self.params["render"]["thumb_size"])
        shown = (conflicts + closest)[:n]
        parts = [gallery(members, g, conflict=g in conflicts, thumbs=thumbs, thumb_size=size) for g in shown]
        title = html.escape(f"{len(shown)} of {members['group'].nunique()} groups ({self.variant}, eps {self.eps:g})")
        return Gallery(f"<style>{CSS}:root{{--thumb:{size}px}}</style><p>{title}</p>" + "\n".join(parts))

    def __repr__(self) -> str:
        return (f"Result({self.variant}: {self.groups['group'].nunique() if len(self.groups) else 0} groups, "
                f"{len(self.remove)} images to remove, eps {self.eps:g}, {len(self.manifest)} images, "
                f"{len(self.skipped)} skipped; files in {self.out})")


class Gallery:
    """HTML that a notebook displays inline (``_repr_html_``); ``str()`` gives the HTML."""

    def __init__(self, markup: str):
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __str__(self) -> str:
        return self.markup


def find_duplicates(images: str | os.PathLike | Mapping | Iterable[str | os.PathLike], labels=None, *,
                    out: str | os.PathLike | None = None, splits: bool = True, **params) -> Result:
    """Find the duplicate and near-duplicate images of a folder (or of named sets, or a list of files).

    Parameters
    ----------
    images : str, Path, mapping, or sequence of paths
        A folder (scanned recursively; every entry ends in the manifest or the skipped list), a folder
        at an fsspec URL (``s3://bucket/train``, ``file:///mnt/train``, ``memory://...``), named sets
        (``{"train": "train_images", "test": "test_images"}``: ids become ``<set>/<path>``) or files.
        A folder whose top-level folders are named like splits (two or more of ``train``, ``test``,
        ``val``, ``valid``, ``validation``, ``dev``, any case) is read as those sets.
    labels : str, Path or mapping, optional
        A Kaggle-style ``image_id,label`` CSV (ids are paths relative to the folder, or bare file
        names), or a mapping id -> label. Groups whose images carry different labels are label conflicts.
    out : str or Path, optional
        Folder for every file written (a project's layout: ``reports/``, ``data/``); default: a new
        temporary folder. Verdicts imported there (``neardup review --import``) count on the next call.
    splits : bool
        Read a folder's split folders as sets (default); False: one set, whatever the folder holds.
    **params : dict per params group
        Overrides of the defaults in ``params.yaml``, one dict per group: ``plant``, ``embed``,
        ``hash``, ``cluster``, ``evaluate``, ``act``, ``render``, ``cache``, ``engine``. For example
        ``embed={"models": ["efficientnet-lite2"]}`` or ``cluster={"eps": [0.3, 0.5]}``. Only the
        primary variant (the first model at the first size) is computed.

    Returns
    -------
    Result
        ``groups``, ``pairs``, ``keep``, ``remove``, ``metrics``, ``reason``; ``folds()``,
        ``report()``, ``show()``.

    Raises
    ------
    neardup.contract.UserError
        Bad params (the message names the param), no readable image, and the like.

    Examples
    --------
    >>> import neardup
    >>> result = neardup.find_duplicates("train_images", labels="train.csv")  # doctest: +SKIP
    >>> result.remove.to_csv("remove.csv", index=False)  # doctest: +SKIP
    """
    from neardup.cache import check_cache_dir
    from neardup.fetch.inputs import check_images, fetch_params
    from neardup.params import default_params, params_from_dict
    from neardup.stage import primary_steps, stage_function

    images = check_images(images)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"find_duplicates(out=...): expected a folder (str or os.PathLike), got {type(out).__name__}")
    merged = _merged(default_params(), params)
    checked = {g: params_from_dict(merged, g) for g in GROUPS}  # every group checked before any work
    check_cache_dir(checked["cache"].dir)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="neardup-"))
    layout = Layout.at(out)
    files = fetch_params(images, labels, layout, merged, splits=splits)
    names = [s["name"] for s in merged["fetch"]["sets"]] or [merged["fetch"]["set_name"]]
    if checked["act"].prefer_set and checked["act"].prefer_set not in names:
        raise UserError(f"act.prefer_set {checked['act'].prefer_set!r} is not a set of these images: {names}")
    out.mkdir(parents=True, exist_ok=True)
    (out / OUTPUT_MARKER).write_text("neardup find output: a scan of a folder holding this one skips it\n")
    (out / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))  # what this output was found with
    for name, options in primary_steps(merged):
        stage_function(name)(merged, layout, **({"files": files} if name == "fetch" and files else options))
    result = Result.read(out, merged)
    log.info("%r", result)
    return result
