"""Source: a local folder of images (any nesting), with optional Kaggle-style labels.

Typical use is an unzipped Kaggle competition, e.g. Cassava Leaf Disease::

    scan_folder(Path("data/cassava/train_images"),
                labels_csv=Path("data/cassava/train.csv"),             # image_id,label
                label_map_json=Path("data/cassava/label_num_to_disease_map.json"), symlinks="inside")

Every directory entry under the folder is accounted for: a file to scan (then in the manifest, or
skipped because it does not decode), or skipped at once with the reason: a FIFO, socket or device,
a dangling or looping symlink, a symlink to a folder (never followed), a symlink the
``fetch.symlinks`` policy does not follow, a folder or file that cannot be read, a name that is not
UTF-8 (:mod:`neardup.fetch.walk`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from neardup.images import scan_files
from neardup.contract import SKIPPED_COLUMNS, FetchResult, SourceError, label_text
from neardup.fetch.walk import shown_path, walk_folder

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("image_id", "label")
#: Separator of the distinct labels an id repeated with different labels gets, e.g. ``"0|3"``.
CONFLICT_SEPARATOR = "|"


def load_labels_csv(path: Path, *, param: str = "fetch.folder.labels_csv") -> dict[str, str]:
    """Read a labels CSV in Kaggle layout (columns ``image_id,label``; others ignored).

    Parameters
    ----------
    path : Path
        CSV file; ``image_id`` is a bare file name or a path relative to the image root.
    param : str
        The param naming this file, for messages.

    Returns
    -------
    dict of str to str
        Label (as text, e.g. ``"3"``) per image id. An id repeated with the same label counts once;
        an id repeated with different labels gets them all, sorted and joined by ``"|"`` (e.g.
        ``"0|3"``), so the conflict stays visible (a warning counts them). Empty labels are ignored
        when other rows of the id have one.

    Raises
    ------
    SourceError
        If the file is missing, unparsable or lacks a required column.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"labels CSV {path} does not exist; fix {param} (relative to its input folder) "
                          f"or set it to ''")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceError(f"labels CSV {path} cannot be parsed ({param}): {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise SourceError(
            f"labels CSV {path} ({param}) lacks column(s) {missing}; found {list(df.columns)}. "
            f"Expected the Kaggle layout with a header line 'image_id,label'."
        )
    if df.empty:
        log.warning("labels CSV %s has no rows: no image gets a label", path)
        return {}
    ids, labels = df["image_id"].str.strip(), df["label"].map(label_text)
    merged: dict[str, list[str]] = {}
    for image_id, label in zip(ids, labels):
        merged.setdefault(image_id, []).append(label)
    out, conflicts, repeats = {}, [], 0
    for image_id, values in merged.items():
        distinct = sorted({v for v in values if v}) or [""]
        repeats += len(values) > 1 and len(distinct) == 1
        if len(distinct) > 1:
            conflicts.append(image_id)
        out[image_id] = CONFLICT_SEPARATOR.join(distinct)
    if repeats:
        log.info("labels CSV %s repeats %d image ids with the same label; each counts once", path, repeats)
    if conflicts:
        log.warning("labels CSV %s gives %d image ids different labels (e.g. %s: %s); each gets all of them "
                    "joined by '%s', so the conflict stays visible", path, len(conflicts), conflicts[0],
                    out[conflicts[0]], CONFLICT_SEPARATOR)
    return out


def load_label_map(path: Path, *, param: str = "fetch.folder.label_map") -> dict[str, str]:
    """Read a label-map JSON object such as Cassava's ``label_num_to_disease_map.json``.

    Parameters
    ----------
    path : Path
        JSON file holding one object, e.g. ``{"0": "Cassava Bacterial Blight (CBB)", ...}``.
    param : str
        The param naming this file, for messages.

    Returns
    -------
    dict of str to str
        Name per label (keys and values converted to ``str``).

    Raises
    ------
    SourceError
        If the file is missing, not JSON, or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"label map {path} does not exist; fix {param} (relative to its input folder) "
                          f"or set it to ''")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"label map {path} ({param}) is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceError(
            f"label map {path} ({param}) must be a JSON object like {{\"0\": \"name\", ...}}, got {type(data).__name__}"
        )
    return {str(k): str(v) for k, v in data.items()}


def scan_folder(
    root: Path,
    *,
    labels_csv: Path | None = None,
    label_map_json: Path | None = None,
    set_name: str = "train",
    cache=None,
    max_pixels: int | None = None,
    symlinks: str,
    param: str = "fetch",
    engine=None,
) -> FetchResult:
    """Scan every entry under ``root`` (recursively) into a manifest or the skipped list.

    Parameters
    ----------
    root : Path
        Image folder; ids are POSIX paths relative to it.
    labels_csv : Path, optional
        Kaggle-style ``image_id,label`` CSV (ids may be bare file names).
    label_map_json : Path, optional
        JSON object mapping label to human-readable name.
    set_name : str
        Value of the manifest's ``set`` column.
    cache : neardup.cache.InspectionCache, optional
        Earlier inspection results by content (see :func:`neardup.images.scan_files`).
    max_pixels : int, optional
        ``fetch.max_pixels`` (see :func:`neardup.images.scan_files`).
    symlinks : {'inside', 'none', 'all'}
        ``fetch.symlinks`` (see :func:`walk_folder`).
    param : str
        Where this source's params live (``fetch`` or ``fetch.sets[i]``), for messages.
    engine : EngineParams, optional
        Where the files are read and decoded (see :func:`neardup.images.scan_files`).

    Returns
    -------
    FetchResult
        Every entry :func:`walk_folder` lists is either in ``manifest`` or in ``skipped`` (with the
        reason); the labels CSV and label map, if they lie inside ``root``, are skipped with the
        reason ``"not an image: ..."``. ``truth`` is None.

    Raises
    ------
    SourceError
        If ``root`` is missing, not a folder or unreadable, or a labels file is invalid.
    """
    root = Path(root)
    where = f"{param}.input and {param}.folder.images"
    if not root.exists():
        raise SourceError(f"image folder {root} does not exist; check {where} (or download the data first)")
    if not root.is_dir():
        raise SourceError(f"image folder {root} is not a folder; check {where}")
    labels = load_labels_csv(labels_csv, param=f"{param}.folder.labels_csv") if labels_csv is not None else None
    label_names = (load_label_map(label_map_json, param=f"{param}.folder.label_map")
                   if label_map_json is not None else None)
    try:
        entries = walk_folder(root, symlinks=symlinks)
    except OSError as exc:
        raise SourceError(f"image folder {root} cannot be read ({exc.strerror or exc}); check {where} and its "
                          f"permissions") from None

    sidecars = {}
    for what, p in (("labels CSV", labels_csv), ("label map", label_map_json)):
        if p is not None:
            sidecars[Path(p).resolve()] = what
    paths, side_rows = [], []
    for entry in entries:
        if entry.reason is not None:
            side_rows.append({"path": shown_path(entry.path), "reason": entry.reason})
            continue
        what = sidecars.get(entry.path.resolve())
        if what:
            log.info("%s %s lies inside the image folder; listed as skipped", what, entry.path)
            side_rows.append({"path": str(entry.path), "reason": f"not an image: it is the {what}"})
        else:
            paths.append(entry.path)
    if not entries:
        log.warning("image folder %s holds no files", root)
    elif side_rows:
        log.info("%s: %d entries skipped without being read (special files, symlinks, unreadable)",
                 set_name, sum(1 for e in entries if e.reason is not None))

    result = scan_files(paths, root=root, set_name=set_name, labels=labels, label_names=label_names, cache=cache,
                        max_pixels=max_pixels, engine=engine)
    if side_rows:
        rows = result.skipped.to_dict("records") + side_rows
        result.skipped = pd.DataFrame(rows, columns=SKIPPED_COLUMNS).sort_values("path", ignore_index=True)
    return result
