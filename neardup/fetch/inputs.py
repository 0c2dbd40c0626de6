"""What ``find_duplicates`` (and ``neardup find``) take as input, as the fetch params of a project:
a folder, a folder URL, named sets or the split folders of a folder, a list of files; labels as a
CSV, a mapping or a list."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from neardup.contract import UserError, label_text, write_table
from neardup.layout import Layout


def check_images(images):
    """``images`` as :func:`find_duplicates` takes them (a folder, a folder URL, or files: then a list);
    anything else is a TypeError naming what is accepted."""
    ok = isinstance(images, (str, os.PathLike, Mapping)) or (
        isinstance(images, Iterable) and not isinstance(images, bytes))
    if not ok:
        raise TypeError(f"find_duplicates(images=...): expected a folder (str or os.PathLike), a folder URL, a "
                        f"mapping set name -> folder or a list of image files, got {type(images).__name__} "
                        f"{images!r:.60}")
    if isinstance(images, Mapping):
        odd = [f for f in images.values() if not isinstance(f, (str, os.PathLike))]
        if odd:
            raise TypeError(f"find_duplicates(images={{name: folder}}): every folder must be a str or os.PathLike, "
                            f"got {type(odd[0]).__name__} {odd[0]!r:.60}")
        return {str(k): v for k, v in images.items()}
    if isinstance(images, (str, os.PathLike)):
        return images
    odd = [p for p in images if not isinstance(p, (str, os.PathLike))]
    if odd:
        raise TypeError(f"find_duplicates(images=[...]): every file must be a str or os.PathLike, got "
                        f"{type(odd[0]).__name__} {odd[0]!r:.60}")
    return list(images)


def labels_table(labels, images):
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


def _sets(images, labels, layout: Layout, params: dict, splits: bool) -> bool:
    """Point ``params["fetch"]`` at named sets: ``images`` as a mapping name -> folder, or (``splits``)
    the split folders of a local folder (:func:`neardup.fetch.splits.split_folders`). Returns whether
    there are sets."""
    from neardup.fetch.folder import load_labels_csv
    from neardup.fetch.splits import set_params, split_folders
    from neardup.files import is_url

    if isinstance(images, Mapping):
        sets = dict(images)
        if not sets:
            raise UserError("find_duplicates got no set: give {name: folder, ...} with at least one")
    elif splits and isinstance(images, (str, os.PathLike)) and not is_url(images) and Path(images).is_dir():
        skip = [layout.root] + ([labels] if isinstance(labels, (str, os.PathLike)) else [])
        sets = split_folders(Path(images), skip=skip)
    else:
        sets = {}
    if not sets:
        return False
    table = load_labels_csv(Path(labels)) if isinstance(labels, (str, os.PathLike)) else labels
    root, specs = set_params(sets, table, layout.path("labels").parent)
    params["fetch"].update(source="folder", input=root, sets=specs)
    return True


def fetch_params(images, labels, layout: Layout, params: dict, *, splits: bool) -> list | None:
    """Point ``params["fetch"]`` at ``images`` (a folder, a folder URL, named sets) and ``labels``;
    returns the list of files to scan when ``images`` is one (else None). Labels given as a mapping
    are written to the layout's ``labels`` CSV first."""
    from neardup.files import is_url

    labels = labels_table(labels, images)
    if _sets(images, labels, layout, params, splits):
        return None
    if isinstance(labels, dict):
        path = layout.path("labels")
        write_table(pd.DataFrame({"image_id": list(labels), "label": list(labels.values())}, dtype=str), path)
        labels = path
    labels_csv = str(Path(labels).resolve()) if labels else ""
    if isinstance(images, (str, os.PathLike)):
        if is_url(images):  # a folder at a URL (neardup.files), read through fsspec
            input_dir, folder = layout.root, {"images": images, "labels_csv": labels_csv, "label_map": ""}
        else:
            input_dir, folder = Path(images), {"images": ".", "labels_csv": labels_csv, "label_map": ""}
            if not input_dir.is_dir():
                raise UserError(f"{input_dir}: not a folder; give find_duplicates a folder of images or a list of "
                                f"files")
        params["fetch"].update(source="folder", input=str(input_dir.resolve()), sets=[], folder=folder)
        return None
    if not images:
        raise UserError("find_duplicates got an empty list of files")
    params["fetch"]["folder"]["labels_csv"] = labels_csv
    return list(images)
