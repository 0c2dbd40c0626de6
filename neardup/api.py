"""The one-call Python API: ``neardup.find_duplicates(folder)`` for notebooks and scripts.

It runs the pipeline's own steps, in the pipeline's order and with its defaults (the package's
``params.yaml``): fetch, plant, embed and hash the primary run (the first model at the first size),
cluster, evaluate (the eps rule, the review queue), act (keep / remove); only DVC is left out. Every
intermediate file is written under ``out`` in the pipeline's layout (:mod:`neardup.contract`).
"""
from __future__ import annotations

import copy
import html
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from neardup.contract import (KEEP, MANIFEST, PAIRS, REMOVE, REVIEWS, TRUTH, UserError, label_text, read_pairs,
                              read_table, run_key, write_fetch_result, write_table)

log = logging.getLogger(__name__)

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
    """What :func:`find_duplicates` found (the primary run, at its chosen eps).

    Attributes
    ----------
    groups : DataFrame, columns ``eps, group, id, label, distance``: one row per image in a group
    pairs : DataFrame, columns ``a, b, distance``: the scored pairs within the chosen eps, closest first
    keep, remove : DataFrames: one keeper per group, the other members to remove (``reports/keep.csv``)
    metrics : dict, the run's metrics (as ``reports/metrics/<run>.json``)
    reason : str, why this eps (a sentence, then a table judging every eps)
    manifest, skipped : DataFrames, the dataset and what was left out with the reason
    queue : DataFrame, the review queue (``python -m neardup.review`` / the HTML report's review view)
    run : str, the run key, e.g. ``efficientnet-lite0_auto``
    out : Path, the folder holding every file written
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
    run: str
    out: Path
    params: dict

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
        """Write the self-contained HTML report (default ``<out>/index.html``) and return its path."""
        from neardup.render.html import write_html_report

        path = Path(path) if path is not None else self.out / "index.html"
        render = self.params["render"]
        write_html_report(path, metrics={"dataset": self.metrics.get("dataset", {}), self.run: self.metrics},
                          runs=[self.run], groups={self.run: self.groups}, manifest=self.manifest,
                          overlap={self.run: pd.DataFrame(self.metrics.get("overlap", {})).T}, figures=None,
                          thumb_size=render["thumb_size"], max_groups=render["max_groups"],
                          reasons={self.run: self.reason}, review_queue=self.queue,
                          max_review_pairs=render["max_pair_figures"])
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
        title = html.escape(f"{len(shown)} of {members['group'].nunique()} groups ({self.run}, eps {self.eps:g})")
        return Gallery(f"<style>{CSS}:root{{--thumb:{size}px}}</style><p>{title}</p>" + "\n".join(parts))

    def __repr__(self) -> str:
        return (f"Result({self.run}: {self.groups['group'].nunique() if len(self.groups) else 0} groups, "
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


def _check_images(images):
    """``images`` as :func:`find_duplicates` takes them (a folder, a folder URL, or files: then a list);
    anything else is a TypeError naming what is accepted."""
    ok = isinstance(images, (str, os.PathLike)) or (
        isinstance(images, Iterable) and not isinstance(images, (bytes, Mapping)))
    if not ok:
        raise TypeError(f"find_duplicates(images=...): expected a folder (str or os.PathLike), a folder URL or a "
                        f"list of image files, got {type(images).__name__} {images!r:.60}")
    return images if isinstance(images, (str, os.PathLike)) else list(images)


def _labels_table(labels, images):
    """``labels`` as given to :func:`find_duplicates`: None, a CSV path (kept), or ``{id: text}``
    (:func:`neardup.contract.label_text`) from a mapping or Series (id -> label) or a list aligned with
    ``images`` (a list of files). Anything else is a TypeError naming what is accepted."""
    if labels is None or isinstance(labels, (str, os.PathLike)):
        return labels or None
    if isinstance(labels, pd.Series):
        labels = labels.to_dict()
    if isinstance(labels, Mapping):
        return {str(k): label_text(v) for k, v in labels.items()}
    if isinstance(labels, (list, tuple, np.ndarray)) and not isinstance(images, (str, os.PathLike)):
        files = [Path(p).resolve() for p in images]
        if len(files) != len(labels):
            raise UserError(f"find_duplicates got {len(files)} files and {len(labels)} labels; give one label a "
                            f"file (None for none)")
        root = Path(os.path.commonpath([str(p.parent) for p in files])) if files else Path()
        return {p.relative_to(root).as_posix(): label_text(v) for p, v in zip(files, labels)}
    raise TypeError(f"find_duplicates(labels=...): expected a CSV path (image_id,label), a mapping or pandas Series "
                    f"id -> label, or a list with one label per file of a list of files; got {type(labels).__name__}")


def _fetch(images, labels, out: Path, params: dict):
    """The dataset: the fetch stage's own code on a folder, or the scanner on a list of files."""
    from neardup.cache import InspectionCache
    from neardup.fetch import EmptyDatasetError, fetch_dataset
    from neardup.fetch.folder import load_labels_csv
    from neardup.files import is_url
    from neardup.images import scan_files
    from neardup.params import params_from_dict

    cache_dir = params["cache"]["dir"]
    cache = InspectionCache(Path(cache_dir)) if cache_dir else None
    engine = params_from_dict(params, "engine")
    labels = _labels_table(labels, images)
    if isinstance(labels, dict):
        labels_path = out / "labels.csv"
        write_table(pd.DataFrame({"image_id": list(labels), "label": list(labels.values())}, dtype=str), labels_path)
        labels = labels_path
    labels_csv = str(Path(labels).resolve()) if labels else ""
    if isinstance(images, (str, os.PathLike)):
        if is_url(images):  # a folder at a URL (neardup.files), read through fsspec
            input_dir, folder = out, {"images": images, "labels_csv": labels_csv, "label_map": ""}
        else:
            input_dir, folder = Path(images), {"images": ".", "labels_csv": labels_csv, "label_map": ""}
            if not input_dir.is_dir():
                raise UserError(f"{input_dir}: not a folder; give find_duplicates a folder of images or a list of "
                                f"files")
        params["fetch"].update(source="folder", input=str(input_dir.resolve()), sets=[], folder=folder)
        try:
            return fetch_dataset(params_from_dict(params, "fetch"), out / "dataset", cache=cache, engine=engine)
        except EmptyDatasetError as exc:
            write_fetch_result(exc.result, out / "dataset")
            raise
    images = list(images)
    odd = [p for p in images if not isinstance(p, (str, os.PathLike))]
    if odd:
        raise TypeError(f"find_duplicates(images=[...]): every file must be a str or os.PathLike, got "
                        f"{type(odd[0]).__name__} {odd[0]!r:.60}")
    paths = [Path(p) for p in images]
    if not paths:
        raise UserError("find_duplicates got an empty list of files")
    root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    fetch = params_from_dict(params, "fetch")
    result = scan_files([p.resolve() for p in paths], root=root, set_name=fetch.set_name,
                        labels=load_labels_csv(Path(labels)) if labels else None, cache=cache,
                        max_pixels=fetch.max_pixels, engine=engine)
    if not len(result.manifest):
        raise UserError(f"none of the {len(paths)} files is a readable image (see {out / 'dataset' / 'skipped.csv'})")
    return result


def find_duplicates(images: str | os.PathLike | Iterable[str | os.PathLike], labels=None, *,
                    out: str | os.PathLike | None = None, **params) -> Result:
    """Find the duplicate and near-duplicate images of a folder (or a list of files).

    Parameters
    ----------
    images : str, Path, or sequence of paths
        A folder (scanned recursively; every entry ends in the manifest or the skipped list), a folder
        at an fsspec URL (``s3://bucket/train``, ``file:///mnt/train``, ``memory://...``) or files.
    labels : str, Path or mapping, optional
        A Kaggle-style ``image_id,label`` CSV (ids are paths relative to the folder, or bare file
        names), or a mapping id -> label. Groups whose images carry different labels are label conflicts.
    out : str or Path, optional
        Folder for every file written (the pipeline's layout); default: a new temporary folder.
    **params : dict per params group
        Overrides of the defaults in ``params.yaml``, one dict per group: ``plant``, ``embed``,
        ``hash``, ``cluster``, ``evaluate``, ``act``, ``render``, ``cache``, ``engine``. For example
        ``embed={"models": ["efficientnet-lite2"]}`` or ``cluster={"eps": [0.3, 0.5]}``. Only the
        primary run (the first model at the first size) is computed.

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
    from neardup.act import choose_keepers
    from neardup.cache import check_cache_dir
    from neardup.cluster.run import cluster_embeddings, write_cluster_outputs
    from neardup.embed.run import embed_images
    from neardup.evaluate import evaluate_run, write_run
    from neardup.hash import hash_images
    from neardup.params import default_params, params_from_dict
    from neardup.plant import plant_copies

    images = _check_images(images)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"find_duplicates(out=...): expected a folder (str or os.PathLike), got {type(out).__name__}")
    merged = _merged(default_params(), params)
    checked = {g: params_from_dict(merged, g) for g in GROUPS}  # every group checked before any work
    check_cache_dir(checked["cache"].dir)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="neardup-"))
    out.mkdir(parents=True, exist_ok=True)
    fetched = _fetch(images, labels, out, merged)
    write_fetch_result(fetched, out / "dataset")
    manifest = read_table(out / "dataset" / MANIFEST)
    plant, embed, hashing, cluster = checked["plant"], checked["embed"], checked["hash"], checked["cluster"]
    planted = plant_copies(manifest, out / "plants", n=plant.n, transforms=plant.transforms, seed=plant.seed)
    write_fetch_result(planted, out / "plants")
    plants_manifest, plant_truth = read_table(out / "plants" / MANIFEST), read_table(out / "plants" / TRUTH)
    model, size = embed.models[0], embed.sizes[0]
    run, cache_dir, engine = run_key(model, size), checked["cache"].dir, checked["engine"]
    emb = embed_images(model, size, manifest, params=embed, cache_dir=cache_dir, engine=engine)
    plants = embed_images(model, size, plants_manifest, params=embed, cache_dir=cache_dir, size_from=manifest,
                          engine=engine)
    hashes = plant_hashes = None
    if cluster.hash_weight:
        hashes = hash_images(cluster.hash, manifest, hash_size=hashing.size, cache_dir=cache_dir, engine=engine)
        plant_hashes = hash_images(cluster.hash, plants_manifest, hash_size=hashing.size, cache_dir=cache_dir,
                                   engine=engine)
    groups, pairs, outcomes, stats = cluster_embeddings(emb, plants, manifest, plant_truth, params=cluster,
                                                        baseline=False, hashes=hashes, plant_hashes=plant_hashes,
                                                        plant_manifest=plants_manifest, cache_dir=cache_dir,
                                                        engine=engine)
    write_cluster_outputs(out / "clusters" / run, groups, pairs, outcomes, stats)
    metrics, sweep, at, queue, reason = evaluate_run(
        run, dataset=out / "dataset", plants_truth=out / "plants" / TRUTH, clusters=out / "clusters" / run,
        reviews_path=out / REVIEWS, params=checked["evaluate"])
    write_run(run, metrics=metrics, sweep=sweep, at=at, queue=queue, reason=reason,
              metrics_path=out / "metrics" / f"{run}.json", plots_dir=out / "plots", out_dir=out / "evaluation" / run)
    keep, remove = choose_keepers(at, manifest, prefer_set=checked["act"].prefer_set)
    write_table(keep, out / KEEP)
    write_table(remove, out / REMOVE)
    within = read_pairs(out / "clusters" / run / PAIRS)  # as written, the distances evaluate judged
    within = within[within["distance"] <= metrics["eps"] + 1e-12][["a", "b", "distance"]].reset_index(drop=True)
    result = Result(groups=at.reset_index(drop=True), pairs=within, keep=keep, remove=remove, metrics=metrics,
                    reason=reason, manifest=manifest, skipped=fetched.skipped, queue=queue, run=run, out=out,
                    params=merged)
    log.info("%r", result)
    return result
