"""Source: a local folder of images (any nesting), with optional Kaggle-style labels.

Typical use is an unzipped Kaggle competition, e.g. Cassava Leaf Disease::

    scan_folder(Path("data/cassava/train_images"),
                labels_csv=Path("data/cassava/train.csv"),             # image_id,label
                label_map_json=Path("data/cassava/label_num_to_disease_map.json"))
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from neardup.images import scan_files
from neardup.contract import SKIPPED_COLUMNS, FetchResult, SourceError

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("image_id", "label")


def load_labels_csv(path: Path) -> dict[str, str]:
    """Read a labels CSV in Kaggle layout (columns ``image_id,label``; others ignored).

    Parameters
    ----------
    path : Path
        CSV file; ``image_id`` is a bare file name or a path relative to the image root.

    Returns
    -------
    dict of str to str
        Label (as text, e.g. ``"3"``) per image id; for repeated ids the first row wins.

    Raises
    ------
    SourceError
        If the file is missing, unparsable or lacks a required column.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"labels CSV {path} does not exist; fix fetch.labels_csv or remove it")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceError(f"labels CSV {path} cannot be parsed: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise SourceError(
            f"labels CSV {path} lacks column(s) {missing}; found {list(df.columns)}. "
            f"Expected the Kaggle layout with a header line 'image_id,label'."
        )
    ids, labels = df["image_id"].str.strip(), df["label"].str.strip()
    dup = ids.duplicated(keep="first")
    if dup.any():
        log.warning("labels CSV %s repeats %d image ids; the first row of each is used", path, int(dup.sum()))
    return dict(zip(ids[~dup], labels[~dup]))


def load_label_map(path: Path) -> dict[str, str]:
    """Read a label-map JSON object such as Cassava's ``label_num_to_disease_map.json``.

    Parameters
    ----------
    path : Path
        JSON file holding one object, e.g. ``{"0": "Cassava Bacterial Blight (CBB)", ...}``.

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
        raise SourceError(f"label map {path} does not exist; fix fetch.label_map_json or remove it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"label map {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceError(
            f"label map {path} must be a JSON object like {{\"0\": \"name\", ...}}, got {type(data).__name__}"
        )
    return {str(k): str(v) for k, v in data.items()}


def scan_folder(
    root: Path,
    *,
    labels_csv: Path | None = None,
    label_map_json: Path | None = None,
    set_name: str = "train",
    cache=None,
) -> FetchResult:
    """Scan every regular file under ``root`` (recursively) into a manifest.

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

    Returns
    -------
    FetchResult
        Every file under ``root`` is either in ``manifest`` or in ``skipped``; the labels
        CSV and label map, if they lie inside ``root``, are listed in ``skipped`` with the
        reason ``"not an image: ..."``. ``truth`` is None.

    Raises
    ------
    SourceError
        If ``root`` is missing or not a folder, or a labels file is invalid.
    """
    root = Path(root)
    if not root.exists():
        raise SourceError(f"image folder {root} does not exist; check fetch.root (or download the data first)")
    if not root.is_dir():
        raise SourceError(f"image folder {root} is not a folder")
    labels = load_labels_csv(labels_csv) if labels_csv is not None else None
    label_names = load_label_map(label_map_json) if label_map_json is not None else None

    sidecars = {}
    for what, p in (("labels CSV", labels_csv), ("label map", label_map_json)):
        if p is not None:
            sidecars[Path(p).resolve()] = what
    paths, side_rows = [], []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        what = sidecars.get(p.resolve())
        if what:
            log.info("%s %s lies inside the image folder; listed as skipped", what, p)
            side_rows.append({"path": str(p), "reason": f"not an image: it is the {what}"})
        else:
            paths.append(p)
    if not paths:
        log.warning("image folder %s holds no files", root)

    result = scan_files(paths, root=root, set_name=set_name, labels=labels, label_names=label_names, cache=cache)
    if side_rows:
        rows = result.skipped.to_dict("records") + side_rows
        result.skipped = pd.DataFrame(rows, columns=SKIPPED_COLUMNS).sort_values("path", ignore_index=True)
    return result
