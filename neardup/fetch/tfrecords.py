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
from tqdm.auto import tqdm

from neardup.images import scan_files
from neardup.contract import SKIPPED_COLUMNS, FetchResult, SourceError
from neardup.fetch.folder import load_label_map

log = logging.getLogger(__name__)


def _safe_name(raw: bytes) -> str | None:
    """A relative POSIX id from an ``image_name`` value, or None if empty/unsafe."""
    name = raw.decode("utf-8", errors="replace").strip().replace("\\", "/")
    if not name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", ".") for part in path.parts):
        log.warning("ignoring unsafe image_name %r", name)
        return None
    return path.as_posix()


def extract_tfrecords(
    pattern: str,
    out_dir: Path,
    *,
    set_name: str = "train",
    label_map_json: Path | None = None,
    cache=None,
) -> FetchResult:
    """Write the images of all TFRecord files matching ``pattern`` to disk and scan them.

    Parameters
    ----------
    pattern : str
        Glob pattern of TFRecord files (``tf.io.gfile.glob`` syntax), e.g.
        ``"data/cassava/train_tfrecords/*.tfrec"``; files are read in sorted order.
    out_dir : Path
        Images are written to ``out_dir / "images" / <id>``; ``id`` is the record's
        ``image_name``, or ``f"{file_stem}_{index:06d}.jpg"`` when it has none. Files
        already there but not in the records are left alone and not scanned.
    set_name : str
        Value of the manifest's ``set`` column.
    label_map_json : Path, optional
        JSON object mapping ``target`` values (as strings) to names.

    Returns
    -------
    FetchResult
        ``manifest`` of the decodable images (label = ``str(target)`` or ``''``);
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
            f"no TFRecord files match {pattern!r}; check fetch.tfrecords (a glob such as 'train_tfrecords/*.tfrec')"
        )
    label_names = load_label_map(label_map_json) if label_map_json is not None else None
    images = Path(out_dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    spec = {
        "image": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image_name": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "target": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    }

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
                image_id = _safe_name(example["image_name"].numpy()) or f"{stem}_{index:06d}.jpg"
                if image_id in written:
                    p = PurePosixPath(image_id)
                    new_id = p.with_name(f"{p.stem}__{stem}_{index:06d}{p.suffix}").as_posix()
                    log.warning("image_name %s repeats (%s); stored as %s", image_id, locator, new_id)
                    image_id = new_id
                target = int(example["target"].numpy())
                if target >= 0:
                    labels[image_id] = str(target)
                path = images / image_id
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                written[image_id] = path
                index += 1
                bar.update()
        log.info("%s: %d records", file, index)

    result = scan_files(
        written.values(), root=images, set_name=set_name, labels=labels or None, label_names=label_names,
        cache=cache,
    )
    if skipped:
        rows = result.skipped.to_dict("records") + skipped
        result.skipped = pd.DataFrame(rows, columns=SKIPPED_COLUMNS).sort_values("path", ignore_index=True)
    return result
