"""Dispatch ``params.yaml: fetch`` to the chosen source, or to one source per named set."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from neardup.params import FetchParams
from neardup.contract import FetchResult, SourceError
from neardup.fetch.demo import make_demo
from neardup.fetch.folder import scan_folder
from neardup.fetch.kaggle import download_competition
from neardup.fetch.tfrecords import extract_tfrecords

log = logging.getLogger(__name__)


def _optional(root: Path, name: str) -> Path | None:
    return root / name if name else None


def fetch_source(spec, out_dir: Path, *, set_name: str, cache=None) -> FetchResult:
    """Build the manifest of one source (``spec``: fetch params or one of ``fetch.sets``).

    Demo and TFRecord images are written under ``out_dir``; folder and Kaggle images stay where they
    are: the manifest points at them. ``cache``: an :class:`neardup.cache.InspectionCache`,
    so files seen before (by content) are not decoded again.
    """
    root = Path(spec.input)
    if spec.source == "demo":
        demo = spec.demo
        return make_demo(out_dir, n_distinct=demo.n_distinct, n_duplicates=demo.n_duplicates,
                         n_label_conflicts=demo.n_label_conflicts, seed=demo.seed, set_name=set_name,
                         n_test=demo.n_test, n_cross=demo.n_cross)
    if spec.source == "tfrecords":
        return extract_tfrecords(str(root / spec.tfrecords.pattern), out_dir, set_name=set_name,
                                 label_map_json=_optional(root, spec.folder.label_map), cache=cache)
    if spec.source == "kaggle":
        root = download_competition(spec.kaggle.competition, root / spec.kaggle.competition)
    images = root / spec.folder.images
    if not images.is_dir():
        raise SourceError(f"{set_name}: image folder {images} does not exist; put your images there or change "
                          "its input / folder.images in params.yaml")
    return scan_folder(images, labels_csv=_optional(root, spec.folder.labels_csv),
                       label_map_json=_optional(root, spec.folder.label_map), set_name=set_name, cache=cache)


def _prefixed(result: FetchResult, name: str) -> FetchResult:
    """Ids (and truth ids) prefixed with ``<set name>/``, so ids stay unique across sets."""
    manifest = result.manifest.assign(id=name + "/" + result.manifest["id"].astype(str), set=name)
    truth = None
    if result.truth is not None:
        truth = result.truth.assign(id=name + "/" + result.truth["id"].astype(str),
                                    original=name + "/" + result.truth["original"].astype(str))
    return FetchResult(manifest=manifest, skipped=result.skipped, truth=truth)


def fetch_dataset(params: FetchParams, out_dir: Path, *, cache=None) -> FetchResult:
    """The whole dataset: the single source of ``params``, or every set of ``params.sets`` together.

    With sets, each is fetched on its own (demo / TFRecord images under ``out_dir/sets/<name>``),
    its ids are prefixed with ``<name>/`` and its ``set`` column is its name.
    """
    if not params.sets:
        return fetch_source(params, out_dir, set_name=params.set_name, cache=cache)
    parts = []
    for spec in params.sets:
        log.info("fetch set %s (%s from %s)", spec.name, spec.source, spec.input)
        parts.append(_prefixed(fetch_source(spec, out_dir / "sets" / spec.name, set_name=spec.name, cache=cache),
                               spec.name))
    truths = [p.truth for p in parts if p.truth is not None]
    return FetchResult(
        manifest=pd.concat([p.manifest for p in parts], ignore_index=True).sort_values("id", ignore_index=True),
        skipped=pd.concat([p.skipped for p in parts], ignore_index=True),
        truth=pd.concat(truths, ignore_index=True).sort_values("id", ignore_index=True) if truths else None)
