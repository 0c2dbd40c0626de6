"""Build the image manifest: hash, decode and describe every file of a dataset.

Each file is fully decoded (not just its header read), so truncated or corrupt images
are caught here and listed in the *skipped* table with a reason, instead of crashing
a later stage.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

import pandas as pd
from PIL import Image, ImageFile, UnidentifiedImageError
from tqdm.auto import tqdm

from neardup.contract import MANIFEST_COLUMNS, SKIPPED_COLUMNS, FetchResult, empty_frame

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest (64 chars) of the bytes of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inspect_image(path: str | os.PathLike) -> tuple[dict | None, str | None]:
    """Fully decode the image at ``path`` and describe it.

    Parameters
    ----------
    path : str or PathLike
        Any file.

    Returns
    -------
    info : dict or None
        ``{'width': int, 'height': int, 'format': str}`` (PIL format name such as
        ``'JPEG'``) when the file decodes, else ``None``.
    reason : str or None
        ``None`` when the file decodes, else a sentence starting with one of
        ``"empty file"``, ``"truncated image: "``, ``"not an image: "`` or ``"unreadable: "``.
    """
    try:
        if os.path.getsize(path) == 0:
            return None, "empty file"
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as im:
            im.load()
            info = {"width": int(im.width), "height": int(im.height), "format": str(im.format)}
        return info, None
    except UnidentifiedImageError:
        return None, "not an image: cannot identify image file"
    except OSError as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            return None, f"truncated image: {msg}"
        return None, f"unreadable: {msg}"
    except Exception as exc:  # noqa: BLE001 - decoders raise many types (SyntaxError, ValueError, ...)
        return None, f"unreadable: {type(exc).__name__}: {exc}"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _relative_id(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
    except ValueError:
        try:
            rel = path.resolve().relative_to(root.resolve())
        except ValueError:
            raise ValueError(f"file {path} is not under the dataset root {root}") from None
    return PurePosixPath(*rel.parts).as_posix()


def _match_labels(ids: list[str], labels: Mapping[str, str]) -> dict[str, str]:
    """Map each id to its label: by full id first, else by unambiguous base name."""
    names = Counter(PurePosixPath(i).name for i in ids)
    out: dict[str, str] = {}
    by_name = ambiguous = 0
    for image_id in ids:
        if image_id in labels:
            out[image_id] = str(labels[image_id])
            continue
        name = PurePosixPath(image_id).name
        if name in labels:
            if names[name] == 1:
                out[image_id] = str(labels[name])
                by_name += 1
            else:
                ambiguous += 1
    if by_name:
        log.info("matched %d labels by bare file name", by_name)
    if ambiguous:
        log.warning(
            "%d files share a base name with another file, so their bare-name labels are "
            "ambiguous and were left empty; give full relative ids in the labels file",
            ambiguous,
        )
    used = set(out) | {PurePosixPath(i).name for i in out}
    unused = sum(1 for key in labels if key not in used)
    if unused:
        log.warning("%d label rows match no file", unused)
    return out


def scan_files(
    paths: Iterable[str | os.PathLike],
    *,
    root: Path,
    set_name: str,
    labels: Mapping[str, str] | None = None,
    label_names: Mapping[str, str] | None = None,
    cache=None,
) -> FetchResult:
    """Hash and decode ``paths`` and sort them into a manifest and a skipped list.

    Parameters
    ----------
    paths : iterable of path-like
        Files under ``root``; duplicates are ignored. The manifest ``path`` is
        ``str(path)`` as given (a relative path stays relative).
    root : Path
        Dataset root; an image's ``id`` is its POSIX path relative to ``root``.
    set_name : str
        Value of the manifest's ``set`` column.
    labels : mapping of str to str, optional
        Label per image, keyed by id or by bare file name (as in Kaggle's ``train.csv``);
        a bare name is used only when no other scanned file has the same name.
    label_names : mapping of str to str, optional
        Human-readable name per label (``label_name`` column); labels not in it keep
        their own value.
    cache : neardup.cache.InspectionCache, optional
        Inspection results by content sha256: a file whose content was inspected before is only
        hashed, not decoded again.

    Returns
    -------
    FetchResult
        ``manifest`` (n_images rows, sorted by id), ``skipped`` (sorted by path),
        ``truth=None``.
    """
    root = Path(root)
    by_id: dict[str, Path] = {}
    for p in paths:
        p = Path(p)
        by_id.setdefault(_relative_id(p, root), p)
    ids = sorted(by_id)
    label_of = _match_labels(ids, labels) if labels else {}
    label_names = {str(k): str(v) for k, v in (label_names or {}).items()}
    unnamed: set[str] = set()

    rows, skipped = [], []
    for image_id in tqdm(ids, desc=f"scan {set_name}", unit="file", leave=False):
        path = by_id[image_id]
        try:
            digest = sha256_file(path)
        except OSError as exc:
            skipped.append({"path": str(path), "reason": f"unreadable: {exc.strerror or exc}"})
            continue
        known = cache.get(digest) if cache is not None else None
        info, reason = known if known is not None else inspect_image(path)
        if cache is not None and known is None:
            cache.put(digest, info, reason)
        if info is None:
            skipped.append({"path": str(path), "reason": reason})
            continue
        label = label_of.get(image_id, "")
        if label and label_names and label not in label_names:
            unnamed.add(label)
        rows.append({
            "id": image_id, "path": str(path), "label": label,
            "label_name": label_names.get(label, label), "set": set_name,
            "sha256": digest, **info,
        })
    if cache is not None:
        cache.flush()
    if labels:
        missing = sum(1 for r in rows if not r["label"])
        if missing:
            log.warning("%d of %d images have no label", missing, len(rows))
    if unnamed:
        log.warning("labels %s are not in the label map; their names stay the raw label", sorted(unnamed))

    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS) if rows else empty_frame(MANIFEST_COLUMNS)
    if rows:
        manifest = manifest.astype({"width": "int64", "height": "int64"})
    skipped_df = (
        pd.DataFrame(skipped, columns=SKIPPED_COLUMNS).sort_values("path", ignore_index=True)
        if skipped else empty_frame(SKIPPED_COLUMNS)
    )
    log.info("%s: %d images, %d skipped", set_name, len(manifest), len(skipped_df))
    return FetchResult(manifest=manifest, skipped=skipped_df, truth=None)
