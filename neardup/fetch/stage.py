"""The fetch stage: the manifest (and ground truth) of the dataset ``params.yaml: fetch`` names.

Writes ``layout.dataset`` (``manifest.csv``, ``skipped.csv``, ``truth.csv``; demo and TFRecord images
under it). ``find_duplicates`` given a list of files instead of a folder passes them as ``files``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from neardup.cache import InspectionCache
from neardup.contract import SKIPPED, write_fetch_result
from neardup.fetch import EmptyDatasetError, fetch_dataset
from neardup.fetch.folder import load_labels_csv
from neardup.fetch.guard import guard_input
from neardup.images import scan_files
from neardup.layout import Layout
from neardup.params import params_from_dict


def _scan_list(files: list, fetch, *, cache, engine):
    """The manifest of a list of files: ids relative to their deepest common folder; labels from
    ``fetch.folder.labels_csv``."""
    paths = [Path(p).resolve() for p in files]
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    labels = load_labels_csv(Path(fetch.folder.labels_csv)) if fetch.folder.labels_csv else None
    return scan_files(paths, root=root, set_name=fetch.set_name, labels=labels, cache=cache,
                      max_pixels=fetch.max_pixels, engine=engine)


def run(params: dict, layout: Layout, *, files: list | None = None) -> None:
    """Fetch the dataset into ``layout.dataset`` (replacing what was there).

    Parameters
    ----------
    params : dict
        The params groups; reads ``fetch``, ``cache`` and ``engine``.
    layout : Layout
        Where to write.
    files : list of path-like, optional
        Scan exactly these files instead of ``fetch``'s source.

    Raises
    ------
    EmptyDatasetError, UserError
        No readable image (``skipped.csv`` is written first, with the reason of each entry).
    """
    fetch, engine = params_from_dict(params, "fetch"), params_from_dict(params, "engine")
    cache_dir = params_from_dict(params, "cache").dir
    if layout.is_project and files is None:
        # the entries of fetch.input DVC would hang or abort on go to .dvcignore (the fetch_input stage did
        # it already under `dvc repro`; again here for a direct run)
        guard_input(fetch.input)
    # the content cache also remembers what each file held, so a re-scan of a grown dataset decodes only
    # the new files (results never depend on it, so it is no DVC dependency)
    cache = InspectionCache(Path(cache_dir)) if cache_dir else None
    out = layout.dataset
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    try:
        if files is not None:
            result = _scan_list(files, fetch, cache=cache, engine=engine)
            if not len(result.manifest):
                raise EmptyDatasetError(f"none of the {len(files)} files is a readable image (see {out / SKIPPED})",
                                        result)
        else:
            result = fetch_dataset(fetch, out, cache=cache, engine=engine)
    except EmptyDatasetError as exc:
        write_fetch_result(exc.result, out)  # skipped.csv says why each entry was left out
        raise
    write_fetch_result(result, out)
