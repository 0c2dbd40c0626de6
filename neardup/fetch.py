"""Dispatch ``params.yaml: fetch`` to the chosen source."""
from __future__ import annotations

import logging
from pathlib import Path

from neardup.params import FetchParams
from neardup.sources import FetchResult, SourceError
from neardup.sources.demo import make_demo
from neardup.sources.folder import scan_folder
from neardup.sources.kaggle import download_competition
from neardup.sources.tfrecords import extract_tfrecords

log = logging.getLogger(__name__)


def _optional(root: Path, name: str) -> Path | None:
    return root / name if name else None


def fetch_dataset(params: FetchParams, out_dir: Path) -> FetchResult:
    """Build the manifest for ``params.source``; demo and TFRecord images are written under ``out_dir``.

    Folder and Kaggle images stay where they are: the manifest points at them.
    """
    root = Path(params.input)
    if params.source == "demo":
        demo = params.demo
        return make_demo(out_dir, n_distinct=demo.n_distinct, n_duplicates=demo.n_duplicates,
                         n_label_conflicts=demo.n_label_conflicts, seed=demo.seed, set_name="demo")
    if params.source == "tfrecords":
        return extract_tfrecords(str(root / params.tfrecords.pattern), out_dir, set_name=params.set_name,
                                 label_map_json=_optional(root, params.folder.label_map))
    if params.source == "kaggle":
        root = download_competition(params.kaggle.competition, root / params.kaggle.competition)
    images = root / params.folder.images
    if not images.is_dir():
        raise SourceError(f"fetch.input/fetch.folder.images: image folder {images} does not exist; "
                          "put your images there or change fetch.input / fetch.folder.images in params.yaml")
    return scan_folder(images, labels_csv=_optional(root, params.folder.labels_csv),
                       label_map_json=_optional(root, params.folder.label_map), set_name=params.set_name)
