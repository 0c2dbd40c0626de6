"""Source: the offline demo dataset, built in seconds from photos that installed packages ship.

Distinct images are non-overlapping tiles (varied sizes) cut from real photos of
scikit-image (``skimage.data``) and scikit-learn (``load_sample_images``). Tiles of the
same photo look alike (realistic hard negatives) but never share a pixel. Planted
duplicates are copies of some tiles, each edited with one transform of
:mod:`neardup.transforms` (every transform of ``EASY_TRANSFORMS`` is used), recorded in the truth table.
The label of an image is the name of its source photo; a few copies carry a wrong
label so that label conflicts exist. One truncated JPEG and one text file exercise
the skipped list.

Layout under ``out_dir / "images"``: ``tiles/<photo>_<k>.jpg``, ``copies/copy_<k>.jpg``,
``broken/truncated.jpg``, ``broken/notes.txt``.
"""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from neardup.engine import tqdm
from neardup.images import scan_files
from neardup.contract import TRUTH_COLUMNS, FetchResult, SourceError
from neardup.fetch.photos import load_photos, select_tiles
from neardup.transforms import EASY_TRANSFORMS, apply_transform

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
#: Tiles are enlarged (bicubic) so their short side lies in this range, the size of ordinary dataset
#: images; transforms such as downscale or JPEG then act on photo-sized images, not on thumbnails.
SHORT_SIDE = (256, 384)
#: Folder of the optional second (test) set under ``images/``.
TEST_DIR = "test"
_SUBDIRS = ("tiles", "copies", "broken", TEST_DIR)


def _prepare_dir(images: Path) -> None:
    if images.exists():
        for sub in _SUBDIRS:
            if (images / sub).exists():
                shutil.rmtree(images / sub)
        left = sorted(p.name for p in images.iterdir())
        if left:
            raise SourceError(
                f"{images} holds files that the demo did not write ({left[:5]}); "
                f"choose another output folder or remove them"
            )
    for sub in _SUBDIRS:
        (images / sub).mkdir(parents=True, exist_ok=True)


def _plan_copies(tiles, photos, n_duplicates: int, rng: np.random.Generator) -> list[tuple[int, str]]:
    """(tile index, transform) per copy; some tiles get two copies; grayscale only of colour tiles."""
    if n_duplicates == 0:
        return []
    n_tiles = len(tiles)
    names = list(EASY_TRANSFORMS)
    transforms = [names[k % len(names)] for k in range(n_duplicates)]
    transforms = [transforms[i] for i in rng.permutation(n_duplicates)]
    n_unique = max(1, min(n_tiles, n_duplicates - n_duplicates // 6))
    unique = rng.choice(n_tiles, size=n_unique, replace=False)
    extra = rng.choice(unique, size=n_duplicates - n_unique, replace=True)
    originals = [int(i) for i in np.concatenate([unique, extra])]
    is_grey = [photos[t[0]][2] for t in tiles]
    for i, (orig, tr) in enumerate(zip(originals, transforms)):
        if tr == "grayscale" and is_grey[orig]:
            for j in range(n_duplicates):
                if transforms[j] != "grayscale" and not is_grey[originals[j]]:
                    originals[i], originals[j] = originals[j], originals[i]
                    break
    return list(zip(originals, transforms))


def _make_test_set(images: Path, photos, tiles, train_ids, train_images, labels: dict, *, n_cross: int,
                   rng: np.random.Generator):
    """Write the test set's own tiles and its copies of train tiles; returns (truth rows, files)."""
    rows, written = [], []
    for k, (p, (x0, y0, x1, y1)) in enumerate(tiles):
        name, arr, _ = photos[p]
        image_id = f"{TEST_DIR}/tiles/{name}_{k:03d}.jpg"
        image = Image.fromarray(np.ascontiguousarray(arr[y0:y1, x0:x1]))
        scale = int(rng.integers(SHORT_SIDE[0], SHORT_SIDE[1] + 1)) / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        (images / image_id).parent.mkdir(parents=True, exist_ok=True)
        _save_jpeg(image, images / image_id)
        labels[image_id] = name
        written.append(images / image_id)
    originals = rng.choice(len(train_ids), size=min(n_cross, len(train_ids)), replace=False)
    names = list(EASY_TRANSFORMS)
    for k, orig in enumerate(originals):
        image_id = f"{TEST_DIR}/cross/copy_{k:03d}.jpg"
        transform = names[k % len(names)]
        (images / image_id).parent.mkdir(parents=True, exist_ok=True)
        _save_jpeg(apply_transform(transform, train_images[orig], rng), images / image_id)
        labels[image_id] = labels[train_ids[orig]]
        rows.append({"id": image_id, "original": train_ids[orig], "transform": transform})
        written.append(images / image_id)
    return rows, written


def _save_jpeg(image: Image.Image, path: Path) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def make_demo(
    out_dir: Path,
    *,
    n_distinct: int = 300,
    n_duplicates: int = 60,
    n_label_conflicts: int = 5,
    seed: int = 0,
    set_name: str = "demo",
    n_test: int = 0,
    n_cross: int = 0,
    test_set: str = "test",
) -> FetchResult:
    """Build the demo dataset under ``out_dir / "images"`` and return its tables.

    Parameters
    ----------
    out_dir : Path
        Output folder; its ``images/tiles``, ``images/copies`` and ``images/broken``
        are replaced. Manifest paths are ``str(out_dir / "images" / id)``.
    n_distinct : int
        Number of distinct tiles (>= 1).
    n_duplicates : int
        Number of planted near-duplicate copies (>= 0); every transform is used once
        before any is used twice.
    n_label_conflicts : int
        How many copies carry a label different from their original's (<= n_duplicates).
    seed : int
        Seed of all randomness; the same seed gives byte-identical images.
    set_name : str
        Value of the manifest's ``set`` column.
    n_test : int
        Distinct tiles of a second set, ``test_set`` (ids ``test/tiles/...``), cut from the same
        photos but sharing no pixel with the first set's tiles.
    n_cross : int
        Copies of first-set tiles planted into the test set (``test/cross/copy_<k>.jpg``, easy
        transforms): known duplicates across the two sets, recorded in the truth table.
    test_set : str
        Set name of the second set.

    Returns
    -------
    FetchResult
        ``manifest`` with ``n_distinct + n_duplicates + n_test + n_cross`` rows, ``skipped`` with
        2 rows (truncated JPEG, text file), ``truth`` with ``n_duplicates + n_cross`` rows.

    Raises
    ------
    ValueError
        If a count is out of range, or ``n_distinct`` exceeds the tiles the photos give.
    """
    if n_distinct < 1:
        raise ValueError(f"n_distinct must be >= 1, got {n_distinct}")
    if n_duplicates < 0:
        raise ValueError(f"n_duplicates must be >= 0, got {n_duplicates}")
    if not 0 <= n_label_conflicts <= n_duplicates:
        raise ValueError(f"n_label_conflicts must be in 0..n_duplicates={n_duplicates}, got {n_label_conflicts}")
    out_dir = Path(out_dir)
    images = out_dir / "images"
    rng = np.random.default_rng(seed)
    photos = load_photos()
    tiles = select_tiles(photos, n_distinct + n_test, seed, rng)
    tiles, test_tiles = tiles[:n_distinct], tiles[n_distinct:]
    _prepare_dir(images)

    labels: dict[str, str] = {}
    tile_ids, tile_images, written = [], [], []
    counters: dict[str, int] = {}
    for p, (x0, y0, x1, y1) in tqdm(tiles, desc="demo tiles", unit="img", leave=False):
        name, arr, _ = photos[p]
        k = counters[name] = counters.get(name, -1) + 1
        image_id = f"tiles/{name}_{k:03d}.jpg"
        image = Image.fromarray(np.ascontiguousarray(arr[y0:y1, x0:x1]))
        scale = int(rng.integers(SHORT_SIDE[0], SHORT_SIDE[1] + 1)) / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        _save_jpeg(image, images / image_id)
        tile_ids.append(image_id)
        tile_images.append(image)
        labels[image_id] = name
        written.append(images / image_id)

    truth_rows = []
    conflicts = set(rng.choice(n_duplicates, size=n_label_conflicts, replace=False).tolist())
    for k, (orig, transform) in enumerate(tqdm(
        _plan_copies(tiles, photos, n_duplicates, rng), desc="demo copies", unit="img", leave=False
    )):
        image_id = f"copies/copy_{k:03d}.jpg"
        _save_jpeg(apply_transform(transform, tile_images[orig], rng), images / image_id)
        label = labels[tile_ids[orig]]
        if k in conflicts:
            others = sorted({n for n, _, _ in photos} - {label})
            label = str(rng.choice(others))
        labels[image_id] = label
        truth_rows.append({"id": image_id, "original": tile_ids[orig], "transform": transform})
        written.append(images / image_id)

    if n_test:
        test_rows, test_written = _make_test_set(images, photos, test_tiles, tile_ids, tile_images, labels,
                                                 n_cross=n_cross, rng=rng)
        truth_rows += test_rows
        written += test_written

    good = _save_jpeg(tile_images[0], images / "broken" / "truncated.jpg")
    (images / "broken" / "truncated.jpg").write_bytes(good[: len(good) * 3 // 5])
    (images / "broken" / "notes.txt").write_text(
        "Not an image: the demo plants this file so that the skipped list is exercised.\n", encoding="utf-8"
    )
    written += [images / "broken" / "truncated.jpg", images / "broken" / "notes.txt"]

    result = scan_files(written, root=images, set_name=set_name, labels=labels)
    in_test = result.manifest["id"].str.startswith(f"{TEST_DIR}/")
    result.manifest.loc[in_test, "set"] = test_set
    result.truth = pd.DataFrame(truth_rows, columns=TRUTH_COLUMNS).sort_values("id", ignore_index=True)
    expected = n_distinct + n_duplicates + n_test + n_cross
    if len(result.skipped) != 2 or len(result.manifest) != expected:
        log.warning("demo: expected %d images and 2 skipped, got %d and %d",
                    expected, len(result.manifest), len(result.skipped))
    log.info("demo: %d distinct tiles, %d planted copies, %d label conflicts in %s",
             n_distinct, n_duplicates, n_label_conflicts, images)
    return result
