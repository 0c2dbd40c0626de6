"""Source: images stored in TFRecord files (the Kaggle Cassava Leaf Disease layout).

Each record is a ``tf.train.Example`` with the features

``image``
    the encoded image file (JPEG bytes), written to disk unchanged;
``image_name`` (optional)
    the file name, e.g. ``b"1000015157.jpg"``;
``target`` (optional)
    the int64 class label.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath

import pandas as pd

from neardup.engine import tqdm
from neardup.images import scan_files
from neardup.contract import SKIPPED_COLUMNS, FetchResult, SourceError
from neardup.fetch.folder import load_label_map

log = logging.getLogger(__name__)


#: Longest file or folder name most file systems accept, in bytes.
NAME_MAX = 255


def _safe_name(raw: bytes) -> tuple[str | None, str | None]:
    """``(id, problem)`` from an ``image_name`` value: a relative POSIX id, or None with the reason
    it cannot be used as a path (None, None when the record has no name)."""
    name = raw.decode("utf-8", errors="replace").strip().replace("\\", "/")
    if not name:
        return None, None
    if "\0" in name:
        return None, "it holds a NUL byte"
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", ".") for part in path.parts):
        return None, "it is absolute or holds '.' or '..'"
    if any(len(part.encode("utf-8")) > NAME_MAX for part in path.parts):
        return None, f"a part of it is longer than {NAME_MAX} bytes"
    return path.as_posix(), None


def _write(images: Path, image_id: str, data: bytes) -> str | None:
    """Write ``data`` as ``images / image_id``; the OS error text when that is impossible (the id is
    a folder already, or one of its folders is a file, or the path is too long)."""
    path = images / image_id
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except (OSError, ValueError) as exc:
        return getattr(exc, "strerror", None) or str(exc)
    return None


def extract_tfrecords(
    pattern: str,
    out_dir: Path,
    *,
    set_name: str = "train",
    label_map_json: Path | None = None,
    cache=None,
    max_pixels: int | None = None,
    param: str = "fetch",
) -> FetchResult:
    """Write the images of all TFRecord files matching ``pattern`` to disk and scan them.

    Parameters
    ----------
    pattern : str
        Glob pattern of TFRecord files (``tf.io.gfile.glob`` syntax), e.g.
        ``"data/cassava/train_tfrecords/*.tfrec"``; files are read in sorted order.
    out_dir : Path
        Images are written to ``out_dir / "images" / <id>``; ``id`` is the record's
        ``image_name``, or ``f"{file_stem}_{index:06d}.jpg"`` when it has none or one that cannot
        be a path (a NUL byte, absolute, ``..``, a part over 255 bytes, a name that is already
        a folder of another record or whose folder is another record's file: counted in one
        warning). Files already there but not in the records are left alone and not scanned.
    set_name : str
        Value of the manifest's ``set`` column.
    label_map_json : Path, optional
        JSON object mapping ``target`` values (as strings) to names.
    cache, max_pixels
        As for :func:`neardup.images.scan_files`.
    param : str
        Where this source's params live (``fetch`` or ``fetch.sets[i]``), for messages.

    Returns
    -------
    FetchResult
        ``manifest`` of the decodable images (label = ``str(target)``, or ``''`` when the
        record has no target or a negative one such as Kaggle's -1 for unlabelled: counted in one
        warning); every record is in the manifest or in ``skipped``:
        ``skipped`` holds undecodable images (by their written path), records without
        image bytes or unparsable records (path ``"<file>#<index>"``) and corrupt
        TFRecord files; ``truth`` is None.

    Raises
    ------
    SourceError
        If no file matches ``pattern`` or the label map is invalid.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise SourceError(
            f"no TFRecord files match {pattern!r}; check {param}.input and {param}.tfrecords.pattern (a glob "
            f"such as 'train_tfrecords/*.tfrec')"
        )
    label_names = (load_label_map(label_map_json, param=f"{param}.folder.label_map")
                   if label_map_json is not None else None)
    images = Path(out_dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    spec = {
        "image": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image_name": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "target": tf.io.VarLenFeature(tf.int64),
    }
    renamed: list[tuple[str, str]] = []  # (record, why its image_name was not used)
    unlabelled = 0

    written: dict[str, Path] = {}
    labels: dict[str, str] = {}
    skipped: list[dict[str, str]] = []
    for file in files:
        stem = PurePosixPath(file).stem
        records = iter(tf.data.TFRecordDataset(file))
        index = 0
        with tqdm(desc=f"extract {PurePosixPath(file).name}", unit="rec", leave=False) as bar:
            while True:
                try:
                    raw = next(records)
                except StopIteration:
                    break
                except tf.errors.OpError as exc:
                    log.warning("TFRecord file %s is corrupt after %d records: %s", file, index, exc.message)
                    reason = f"unreadable: corrupt TFRecord file after record {index}: {exc.message}"
                    skipped.append({"path": file, "reason": reason})
                    break
                locator = f"{file}#{index}"
                try:
                    example = tf.io.parse_single_example(raw, spec)
                except tf.errors.InvalidArgumentError as exc:
                    skipped.append({"path": locator, "reason": f"unreadable: record cannot be parsed: {exc.message}"})
                    index += 1
                    bar.update()
                    continue
                data = example["image"].numpy()
                if not data:
                    skipped.append({"path": locator, "reason": "not an image: record has no 'image' bytes"})
                    index += 1
                    bar.update()
                    continue
                fallback = f"{stem}_{index:06d}.jpg"
                image_id, problem = _safe_name(example["image_name"].numpy())
                if problem:
                    renamed.append((locator, problem))
                image_id = image_id or fallback
                if image_id in written:
                    p = PurePosixPath(image_id)
                    new_id = p.with_name(f"{p.stem}__{stem}_{index:06d}{p.suffix}").as_posix()
                    log.warning("image_name %s repeats (%s); stored as %s", image_id, locator, new_id)
                    image_id = new_id
                error = _write(images, image_id, data)
                if error and image_id != fallback and fallback not in written:
                    renamed.append((locator, f"it cannot be written as a file ({error})"))
                    image_id, error = fallback, _write(images, fallback, data)
                if error:
                    skipped.append({"path": locator, "reason": f"unreadable: the image cannot be written ({error})"})
                    index += 1
                    bar.update()
                    continue
                targets = example["target"].values.numpy()
                if len(targets) == 1 and int(targets[0]) >= 0:
                    labels[image_id] = str(int(targets[0]))
                else:
                    unlabelled += 1
                written[image_id] = images / image_id
                index += 1
                bar.update()
        log.info("%s: %d records", file, index)

    if renamed:
        log.warning("%d records have an image_name that cannot be a file name (e.g. %s: %s); they are stored as "
                    "<file>_<index>.jpg", len(renamed), *renamed[0])
    if unlabelled:
        log.warning("%d of %d records have no target or a negative one (e.g. -1, unlabelled as in a Kaggle test "
                    "set): their label is empty", unlabelled, len(written))
    result = scan_files(
        written.values(), root=images, set_name=set_name, labels=labels or None, label_names=label_names,
        cache=cache, max_pixels=max_pixels,
    )
    if skipped:
        rows = result.skipped.to_dict("records") + skipped
        result.skipped = pd.DataFrame(rows, columns=SKIPPED_COLUMNS).sort_values("path", ignore_index=True)
    return result
