"""A folder at a URL (``fetch.folder.images: s3://bucket/train``, ``gs://...``, ``file:///mnt/...``): its
files listed through fsspec and scanned like a local folder's; the manifest keeps their URLs, which
every stage (and every Dask worker) reads through :mod:`neardup.files`.

DVC cannot hash a URL folder as a dependency, so the ``fetch_input`` stage writes a line with a
digest of its listing (names, sizes, versions) to ``data/fetch_input.txt``, which fetch depends on:
a file added, removed or changed there reruns fetch.
"""
from __future__ import annotations

from pathlib import Path

from neardup.contract import FetchResult
from neardup.fetch.folder import load_label_map, load_labels_csv
from neardup.files import list_url, url_fs
from neardup.images import scan_files


def scan_url(url: str, *, labels_csv: Path | None = None, label_map_json: Path | None = None, set_name: str = "train",
             cache=None, max_pixels: int | None = None, param: str = "fetch", engine=None) -> FetchResult:
    """Scan every file under the folder ``url`` into a manifest or the skipped list (as
    :func:`neardup.fetch.folder.scan_folder`; the labels CSV and label map are local files)."""
    where = f"{param}.folder.images"
    files = list_url(url, param=where)
    fs, inner = url_fs(url, where)
    labels = load_labels_csv(labels_csv, param=f"{param}.folder.labels_csv") if labels_csv is not None else None
    label_names = (load_label_map(label_map_json, param=f"{param}.folder.label_map")
                   if label_map_json is not None else None)
    return scan_files([f.url for f in files], root=fs.unstrip_protocol(inner), set_name=set_name, labels=labels,
                      label_names=label_names, cache=cache, max_pixels=max_pixels, engine=engine)
