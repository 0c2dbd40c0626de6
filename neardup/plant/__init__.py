"""plant: planted duplicates, for measured recall on any dataset.

Copies of sampled real images, transformed as in the demo, are written OUTSIDE the user's data
(under the pipeline's own ``data/plants/``), embedded beside the real images and clustered with
them; they never appear in a reported duplicate list. Their outcome per eps gives recall per
transform and how often a copy lands in a group with an unrelated image.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from neardup.engine import tqdm
from neardup.decode import open_rgb
from neardup.images import scan_files
from neardup.contract import TRUTH_COLUMNS, FetchResult, read_manifest, write_fetch_result
from neardup.layout import Layout
from neardup.params import check_choice, params_from_dict
from neardup.transforms import TRANSFORMS, apply_transform

log = logging.getLogger(__name__)

PLANT_PREFIX = "planted/"
PLANTED_SET = "__planted__"


def plant_copies(manifest: pd.DataFrame, out_dir: Path, *, n: int, transforms, seed: int) -> FetchResult:
    """Write ``n`` transformed copies of images sampled from ``manifest`` under ``out_dir / "images"``.

    Originals are sampled without replacement (deterministically from ``seed``); transforms cycle
    through ``transforms`` so each is represented. Copies are ids ``planted/copy_NNNNN.jpg`` in set
    ``__planted__``; the truth table maps each to its original's id.

    Returns
    -------
    FetchResult whose manifest has one row per copy (same columns as the dataset's) and whose
    truth has columns ``id, original, transform``.
    """
    out_dir = Path(out_dir)
    images = out_dir / "images"
    if images.exists():
        shutil.rmtree(images)
    (images / "planted").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n = min(n, len(manifest))
    chosen = np.sort(rng.choice(len(manifest), size=n, replace=False)) if n else np.zeros(0, int)
    names = list(transforms)
    rows, written = [], []
    for k, index in enumerate(tqdm(chosen, desc="plant copies", unit="img", leave=False)):
        original = manifest.iloc[int(index)]
        transform = names[k % len(names)]
        copy = apply_transform(transform, open_rgb(original["path"], max_pixels=None), rng)
        image_id = f"{PLANT_PREFIX}copy_{k:05d}.jpg"
        copy.save(images / image_id, format="JPEG", quality=95)
        rows.append((image_id, original["id"], transform))
        written.append(images / image_id)
    labels = {r[0]: manifest.iloc[int(i)]["label"] for r, i in zip(rows, chosen)}
    # each copy carries its original's label; unlabelled originals: no labels (and no warning about them)
    result = scan_files(written, root=images, set_name=PLANTED_SET,
                        labels=labels if any(label != "" for label in labels.values()) else None)
    result.truth = pd.DataFrame(rows, columns=TRUTH_COLUMNS)
    log.info("planted %d copies of %d images (%s)", n, len(manifest), ", ".join(names))
    return result


def run(params: dict, layout: Layout) -> None:
    """The plant stage: ``plant.n`` copies of sampled real images of ``layout``, each transformed by one
    of ``plant.transforms``, into ``layout.plants`` (replacing what was there). Reads ``plant``."""
    plant = params_from_dict(params, "plant")
    for name in plant.transforms:
        check_choice(name, TRANSFORMS, "plant.transforms")
    manifest = read_manifest(layout.manifest())
    out = layout.plants
    if out.exists():
        shutil.rmtree(out)
    write_fetch_result(plant_copies(manifest, out, n=plant.n, transforms=plant.transforms, seed=plant.seed), out)
