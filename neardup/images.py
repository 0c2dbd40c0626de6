"""Build the image manifest: hash, decode and describe every file of a dataset.

Each file is fully decoded (not just its header read), so truncated or corrupt images
are caught here and listed in the *skipped* table with a reason, instead of crashing
a later stage. Decoding is :func:`neardup.decode.decode_image`, the one decoder every stage uses
(:func:`neardup.decode.open_rgb`), so the pixels checked here are the pixels every stage sees.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

import pandas as pd
from PIL import UnidentifiedImageError

from neardup.cache import sha256_file
from neardup.contract import MANIFEST_COLUMNS, SKIPPED_COLUMNS, FetchResult, empty_frame
from neardup.decode import ImageTooLarge, decode_image, pixel_sha256
from neardup.engine import map_on_dask, ordered_map, tqdm
from neardup.files import input_size, is_url

log = logging.getLogger(__name__)

#: The fields of :func:`inspect_image`'s info dict (and of the manifest they fill).
INFO_FIELDS = ("width", "height", "format", "frames", "orientation", "pixel_sha256")


def inspect_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[dict | None, str | None]:
    """Fully decode the image at ``path`` (as :func:`open_rgb` does) and describe it.

    Parameters
    ----------
    path : str or PathLike
        Any file.
    max_pixels : int, optional
        Cap on width x height (``fetch.max_pixels``), checked from the header before decoding.

    Returns
    -------
    info : dict or None
        When the file decodes: ``width`` and ``height`` (of the upright image, int), ``format``
        (Pillow's name such as ``'JPEG'``), ``frames`` (int; only the first is used),
        ``orientation`` (the EXIF orientation applied, 1 = none) and ``pixel_sha256``
        (:func:`pixel_sha256`). Else ``None``.
    reason : str or None
        ``None`` when the file decodes, else a sentence starting with one of
        ``"empty file"``, ``"too large: "``, ``"truncated image: "``, ``"not an image: "`` or ``"unreadable: "``.
    """
    try:
        if input_size(path) == 0:
            return None, "empty file"
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    try:
        decoded = decode_image(path, max_pixels=max_pixels)
        rgb = decoded.image
        info = {"width": int(rgb.width), "height": int(rgb.height), "format": decoded.format,
                "frames": decoded.frames, "orientation": decoded.orientation, "pixel_sha256": pixel_sha256(rgb)}
        return info, None
    except ImageTooLarge as exc:
        return None, str(exc)
    except UnidentifiedImageError:
        return None, "not an image: cannot identify image file"
    except OSError as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            return None, f"truncated image: {msg}"
        return None, f"unreadable: {msg}"
    except Exception as exc:  # noqa: BLE001 - decoders raise many types (SyntaxError, ValueError, ...)
        return None, f"unreadable: {type(exc).__name__}: {exc}"


def _relative_id(path: Path, root: Path) -> str:
    if is_url(root):  # a URL folder (neardup.fetch.remote): ids relative to it
        if not str(path).startswith(root.rstrip("/") + "/"):
            raise ValueError(f"file {path} is not under the dataset root {root}")
        return str(path)[len(root.rstrip("/")) + 1:]
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


def _read_files(paths: list, desc: str = "") -> list[tuple[str | None, str | None]]:
    """``(sha256, None)`` per regular file, ``(None, reason)`` for the rest (a task on a Dask worker)."""
    out = []
    for path in tqdm(paths, desc=desc or "read", unit="file", leave=False, disable=not desc):
        try:
            if not is_url(path) and not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block for ever
                out.append((None, "special file: not an image"))
                continue
            out.append((sha256_file(path), None))
        except OSError as exc:
            out.append((None, f"unreadable: {exc.strerror or exc}"))
    return out


def _inspect_files(paths: list, desc: str = "", *, max_pixels: int | None = None) -> list[tuple]:
    """:func:`inspect_image` of each path (a task on a Dask worker)."""
    return [inspect_image(path, max_pixels=max_pixels)
            for path in tqdm(paths, desc=desc or "decode", unit="file", leave=False, disable=not desc)]


def _on_engine(task, paths: list, engine, desc: str, **kwargs) -> list:
    """``task(paths)`` here, or in shards of ``engine.shard_size`` on Dask workers (``engine.kind: dask``)."""
    if engine is None or engine.kind == "local" or not paths:  # here: chunks on one thread per core
        start = time.perf_counter()
        chunks = [paths[i:i + 16] for i in range(0, len(paths), 16)]
        done = ordered_map(lambda chunk: task(chunk, "", **kwargs), chunks, desc=desc, unit="file", count=len)
        out = [item for chunk in done for item in chunk]
        seconds = time.perf_counter() - start
        if paths:
            log.info("%s: %d files in %.1f s (%.1f files/s)", desc, len(paths), seconds, len(paths) / max(seconds, 1e-9))
        return out

    return [item for shard in map_on_dask(task, paths, engine=engine, what=desc, **kwargs) for item in shard]


def scan_files(
    paths: Iterable[str | os.PathLike],
    *,
    root: Path,
    set_name: str,
    labels: Mapping[str, str] | None = None,
    label_names: Mapping[str, str] | None = None,
    cache=None,
    max_pixels: int | None = None,
    engine=None,
) -> FetchResult:
    """Hash and decode ``paths`` and sort them into a manifest and a skipped list.

    Parameters
    ----------
    paths : iterable of path-like
        Files under ``root``; duplicates are ignored. The manifest ``path`` is
        ``str(path)`` as given (a relative path stays relative; a URL stays a URL).
    root : Path or str
        Dataset root (a folder, or a URL: :mod:`neardup.files`); an image's ``id`` is its POSIX path
        relative to ``root``.
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
    max_pixels : int, optional
        ``fetch.max_pixels``: images whose header announces more pixels are skipped ("too large: ...")
        without being decoded.
    engine : EngineParams, optional
        ``kind: dask``: files are read and hashed, then the new ones decoded, in shards of
        ``shard_size`` on Dask workers (which must see the same paths); default here.

    Returns
    -------
    FetchResult
        ``manifest`` (n_images rows, sorted by id), ``skipped`` (sorted by path),
        ``truth=None``.
    """
    root = root if is_url(root) else Path(root)
    by_id: dict[str, Path | str] = {}
    for p in paths:
        p = p if is_url(p) else Path(p)
        by_id.setdefault(_relative_id(p, root), p)
    ids = sorted(by_id)
    label_of = _match_labels(ids, labels) if labels else {}
    label_names = {str(k): str(v) for k, v in (label_names or {}).items()}
    unnamed: set[str] = set()

    paths = [by_id[image_id] for image_id in ids]
    read = _on_engine(_read_files, paths, engine, "scan " + set_name)  # (sha256, None) or (None, reason)
    known: dict[str, tuple] = {}  # inspection by content: from the cache, or decoded once below
    for digest, _ in read:
        entry = cache.get(digest) if cache is not None and digest and digest not in known else None
        if entry is not None and (entry[0] is None or set(INFO_FIELDS) <= set(entry[0])):
            known[digest] = entry  # (else written before the info had all its fields: inspect again)
    todo = {}
    for path, (digest, _) in zip(paths, read):
        if digest and digest not in known:
            todo.setdefault(digest, path)
    for digest, entry in zip(todo, _on_engine(_inspect_files, list(todo.values()), engine, "decode " + set_name,
                                              max_pixels=max_pixels)):
        known[digest] = entry
        # "too large" depends on the cap, not on the content: never cached
        if cache is not None and not (entry[1] or "").startswith("too large"):
            cache.put(digest, *entry)

    rows, skipped = [], []
    for image_id, path, (digest, why) in zip(ids, paths, read):
        if digest is None:
            skipped.append({"path": str(path), "reason": why})
            continue
        info, reason = known[digest]
        if info is not None and max_pixels is not None and info["width"] * info["height"] > max_pixels:
            info, reason = None, str(ImageTooLarge(info["width"], info["height"], max_pixels))
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
        manifest = manifest.astype({"width": "int64", "height": "int64", "frames": "int64", "orientation": "int64"})
    skipped_df = (
        pd.DataFrame(skipped, columns=SKIPPED_COLUMNS).sort_values("path", ignore_index=True)
        if skipped else empty_frame(SKIPPED_COLUMNS)
    )
    log.info("%s: %d images, %d skipped", set_name, len(manifest), len(skipped_df))
    return FetchResult(manifest=manifest, skipped=skipped_df, truth=None)
