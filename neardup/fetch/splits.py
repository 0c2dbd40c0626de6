"""Named sets from folders, for ``find``: a folder's top-level ``train/``, ``test/``, ``val/`` ...
become sets (or the user names them), so leakage between them is found and reported as in a project's
``fetch.sets``, without writing one.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

import pandas as pd

from neardup.contract import UserError, write_table

log = logging.getLogger(__name__)

#: Top-level folder names (any case) that ``find`` takes for splits of a dataset.
SPLIT_NAMES = ("train", "test", "val", "valid", "validation", "dev")


def split_folders(folder: Path, *, skip=()) -> dict[str, Path]:
    """The top-level folders of ``folder`` named like splits (:data:`SPLIT_NAMES`, any case), name ->
    path, sorted by name; empty unless there are two or more. Other top-level entries (``skip`` and
    hidden ones aside) are then left out of the scan: a warning counts and names them."""
    entries = sorted(folder.iterdir())
    found = {p.name: p for p in entries if p.is_dir() and p.name.lower() in SPLIT_NAMES}
    if len(found) < 2:
        return {}
    skip = {Path(os.path.abspath(s)) for s in skip}
    left = [p.name for p in entries if p.name not in found and not p.name.startswith(".")
            and Path(os.path.abspath(p)) not in skip]
    log.info("%s: split folders %s become sets", folder, ", ".join(found))
    if left:
        log.warning("%d entries of %s lie outside its split folders (%s), e.g. %s: they are not scanned; name every "
                    "set with --sets NAME=PATH (find_duplicates({name: folder, ...})) to include them", len(left),
                    folder, ", ".join(found), left[0])
    return found


def set_params(sets: Mapping[str, Path], labels: Mapping[str, str] | None, labels_dir: Path) -> tuple[str, list]:
    """``fetch.input`` and ``fetch.sets`` for named folders.

    Parameters
    ----------
    sets : mapping of str to Path
        Set name -> its folder of images.
    labels : mapping of str to str, optional
        Label per image id: a path relative to the sets' common folder (``train/a.jpg``) or a bare
        file name. Each set gets a CSV of its own labels (ids relative to its folder) in ``labels_dir``.
    labels_dir : Path

    Returns
    -------
    (str, list of dict): the sets' common folder, and one ``fetch.sets`` entry per set.
    """
    folders = {str(name): Path(path).resolve() for name, path in sets.items()}
    for name, path in folders.items():
        if not path.is_dir():
            raise UserError(f"{path}: not a folder, for the set {name!r}; give each set a folder of images")
    root = Path(os.path.commonpath([str(p) for p in folders.values()]))
    if root in folders.values():  # one set's folder holds another's, or one set: their common parent
        root = root.parent
    specs = []
    for name, path in folders.items():
        csv = ""
        if labels:
            prefix = path.relative_to(root).as_posix() + "/"
            own = {k[len(prefix):]: v for k, v in labels.items() if k.startswith(prefix)}
            own.update({k: v for k, v in labels.items() if "/" not in k and k not in own})  # bare file names
            csv = labels_dir / f"labels.{name}.csv"
            write_table(pd.DataFrame({"image_id": list(own), "label": list(own.values())}, dtype=str), csv)
        specs.append({"name": name, "source": "folder", "input": str(path),
                      "folder": {"images": ".", "labels_csv": str(csv), "label_map": ""}})
    return str(root), specs
