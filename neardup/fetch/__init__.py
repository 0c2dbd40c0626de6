"""Dispatch ``params.yaml: fetch`` to the chosen source, or to one source per named set."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from neardup.params import FetchParams
from neardup.contract import SKIPPED, FetchResult, SourceError, UserError
from neardup.fetch.demo import make_demo
from neardup.fetch.folder import scan_folder
from neardup.fetch.kaggle import download_competition
from neardup.fetch.remote import scan_url
from neardup.fetch.tfrecords import extract_tfrecords
from neardup.files import is_url

log = logging.getLogger(__name__)


def _optional(root: Path, name: str) -> Path | None:
    return root / name if name else None


def fetch_source(spec, out_dir: Path, *, set_name: str, cache=None, max_pixels: int | None = None,
                 symlinks: str, param: str = "fetch", engine=None) -> FetchResult:
    """Build the manifest of one source (``spec``: fetch params or one of ``fetch.sets``).

    Demo and TFRecord images are written under ``out_dir``; folder and Kaggle images stay where they
    are: the manifest points at them. ``cache``: an :class:`neardup.cache.InspectionCache`,
    so files seen before (by content) are not decoded again. ``max_pixels`` and ``symlinks``:
    ``fetch.max_pixels`` and ``fetch.symlinks``; ``param``: where ``spec`` lives in params.yaml
    (``fetch`` or ``fetch.sets[i]``), for messages. ``engine``: with ``kind: dask``, a folder's files
    are read and decoded on Dask workers (:func:`neardup.images.scan_files`).
    """
    root = Path(spec.input)
    if spec.source == "demo":
        demo = spec.demo
        return make_demo(out_dir, n_distinct=demo.n_distinct, n_duplicates=demo.n_duplicates,
                         n_label_conflicts=demo.n_label_conflicts, seed=demo.seed, set_name=set_name,
                         n_test=demo.n_test, n_cross=demo.n_cross)
    if spec.source == "tfrecords":
        return extract_tfrecords(str(root / spec.tfrecords.pattern), out_dir, set_name=set_name,
                                 label_map_json=_optional(root, spec.folder.label_map), cache=cache,
                                 max_pixels=max_pixels, param=param)
    if spec.source == "folder" and is_url(spec.folder.images):
        return scan_url(spec.folder.images, labels_csv=_optional(root, spec.folder.labels_csv),
                        label_map_json=_optional(root, spec.folder.label_map), set_name=set_name, cache=cache,
                        max_pixels=max_pixels, param=param, engine=engine)
    if spec.source == "kaggle":
        root = download_competition(spec.kaggle.competition, root / spec.kaggle.competition)
    images = root / spec.folder.images
    if not images.is_dir():
        raise SourceError(f"{set_name}: image folder {images} does not exist; put your images there or change "
                          f"{param}.input / {param}.folder.images in params.yaml")
    return scan_folder(images, labels_csv=_optional(root, spec.folder.labels_csv),
                       label_map_json=_optional(root, spec.folder.label_map), set_name=set_name, cache=cache,
                       max_pixels=max_pixels, symlinks=symlinks, param=param, engine=engine)


def _prefixed(result: FetchResult, name: str) -> FetchResult:
    """Ids (and truth ids) prefixed with ``<set name>/``, so ids stay unique across sets."""
    manifest = result.manifest.assign(id=name + "/" + result.manifest["id"].astype(str), set=name)
    truth = None
    if result.truth is not None:
        truth = result.truth.assign(id=name + "/" + result.truth["id"].astype(str),
                                    original=name + "/" + result.truth["original"].astype(str))
    return FetchResult(manifest=manifest, skipped=result.skipped, truth=truth)


def fetch_dataset(params: FetchParams, out_dir: Path, *, cache=None, engine=None) -> FetchResult:
    """The whole dataset: the single source of ``params``, or every set of ``params.sets`` together.

    With sets, each is fetched on its own (demo / TFRecord images under ``out_dir/sets/<name>``),
    its ids are prefixed with ``<name>/`` and its ``set`` column is its name. ``cache``, ``engine``: see
    :func:`fetch_source`.

    Raises
    ------
    EmptyDatasetError
        When no image at all is readable (its ``result`` holds the skipped list, to be written).
    """
    options = {"cache": cache, "max_pixels": params.max_pixels, "symlinks": params.symlinks, "engine": engine}
    if not params.sets:
        result = fetch_source(params, out_dir, set_name=params.set_name, **options)
    else:
        parts = []
        for i, spec in enumerate(params.sets):
            log.info("fetch set %s (%s from %s)", spec.name, spec.source, spec.input)
            part = fetch_source(spec, out_dir / "sets" / spec.name, set_name=spec.name, param=f"fetch.sets[{i}]",
                                **options)
            parts.append(_prefixed(part, spec.name))
        truths = [p.truth for p in parts if p.truth is not None]
        result = FetchResult(
            manifest=pd.concat([p.manifest for p in parts], ignore_index=True).sort_values("id", ignore_index=True),
            skipped=pd.concat([p.skipped for p in parts], ignore_index=True),
            truth=pd.concat(truths, ignore_index=True).sort_values("id", ignore_index=True) if truths else None)
    _report(result, params)
    return result


class EmptyDatasetError(UserError):
    """No readable image in the whole dataset; ``result`` (empty manifest, the skipped list) is kept
    so that the stage can write ``skipped.csv`` before it stops."""

    def __init__(self, message: str, result: FetchResult):
        super().__init__(message)
        self.result = result


def _report(result: FetchResult, params: FetchParams) -> None:
    """Say what a user must know about the whole dataset: multi-frame images, nothing readable."""
    manifest = result.manifest
    if len(manifest) and "frames" in manifest:
        multi = manifest[manifest["frames"].astype(int) > 1]
        if len(multi):
            log.warning("%d images have several frames (animated GIF, multi-page TIFF, ...), e.g. %s (%s frames): "
                        "only the first frame is used (manifest column 'frames')", len(multi), multi["id"].iloc[0],
                        multi["frames"].iloc[0])
    if len(manifest) == 0:
        where = ", ".join(dict.fromkeys(_scanned(spec) for spec in (params.sets or (params,))))
        raise EmptyDatasetError(
            f"no readable image in {where}: all {len(result.skipped)} entries found were skipped (the reason of each "
            f"is in {SKIPPED}); check fetch.input, fetch.source and fetch.folder.images in params.yaml", result)


def _scanned(spec) -> str:
    """The folder (or TFRecord glob) a source reads, for messages."""
    root = Path(spec.input)
    if spec.source == "tfrecords":
        return str(root / spec.tfrecords.pattern)
    if spec.source == "kaggle":
        root = root / spec.kaggle.competition
    return str(root / spec.folder.images)
