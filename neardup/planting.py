"""Planted duplicates: measured recall on any dataset.

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
from PIL import Image
from tqdm.auto import tqdm

from neardup.manifest import scan_files
from neardup.sources import TRUTH_COLUMNS, FetchResult
from neardup.transforms import apply_transform

log = logging.getLogger(__name__)

PLANT_PREFIX = "planted/"
PLANTED_SET = "__planted__"
OUTCOME_COLUMNS = ["eps", "id", "original", "transform", "found", "with_unrelated"]


def is_planted(ids) -> np.ndarray:
    """Boolean mask of planted-copy ids. Shape (n,)."""
    return np.char.startswith(np.asarray(ids, dtype=str), PLANT_PREFIX)


def plant_copies(manifest: pd.DataFrame, out_dir: Path, *, n: int, transforms, seed: int = 0) -> FetchResult:
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
        with Image.open(original["path"]) as im:
            copy = apply_transform(transform, im.convert("RGB"), rng)
        image_id = f"{PLANT_PREFIX}copy_{k:05d}.jpg"
        copy.save(images / image_id, format="JPEG", quality=95)
        rows.append((image_id, original["id"], transform))
        written.append(images / image_id)
    result = scan_files(written, root=images, set_name=PLANTED_SET,
                        labels={r[0]: manifest.iloc[int(i)]["label"] for r, i in zip(rows, chosen)})
    result.truth = pd.DataFrame(rows, columns=TRUTH_COLUMNS)
    log.info("planted %d copies of %d images (%s)", n, len(manifest), ", ".join(names))
    return result


def planted_outcomes(groups: pd.DataFrame, truth: pd.DataFrame, eps_values, real_groups=None) -> pd.DataFrame:
    """What happened to each planted copy at each eps.

    Parameters
    ----------
    groups : DataFrame with columns ``eps, group, id`` from clustering real images and copies together
    truth : DataFrame with columns ``id, original, transform`` (the planted copies)
    eps_values : sequence of float
        The sweep (an eps where nothing grouped still gets its rows).
    real_groups : DataFrame with columns ``eps, group, id``, optional
        Groups of the real images alone: images already grouped with the original there (its real
        duplicates) do not count as unrelated.

    Returns
    -------
    DataFrame with columns ``eps, id, original, transform, found, with_unrelated``: ``found`` when
    the copy shares a group with its original, ``with_unrelated`` when its group holds any image
    other than the original's real group and the copies made from that group's images.
    """
    siblings = {}
    for copy, original in zip(truth["id"], truth["original"]):
        siblings.setdefault(original, {original}).add(copy)
    rows = []
    for eps in sorted(eps_values):
        at = groups[np.isclose(groups["eps"].astype(float), eps)]
        group_of = dict(zip(at["id"], at["group"]))
        members = at.groupby("group")["id"].apply(set).to_dict()
        real_members: dict = {}
        if real_groups is not None:
            real_at = real_groups[np.isclose(real_groups["eps"].astype(float), eps)]
            for _, ids in real_at.groupby("group")["id"]:
                for i in ids:
                    real_members[i] = set(ids)
        for copy, original, transform in zip(truth["id"], truth["original"], truth["transform"]):
            g = group_of.get(copy)
            found = g is not None and group_of.get(original) == g
            family = set().union(*(siblings.get(o, {o}) for o in real_members.get(original, {original})))
            unrelated = g is not None and bool(members[g] - family)
            rows.append((float(eps), copy, original, transform, found, unrelated))
    return pd.DataFrame(rows, columns=OUTCOME_COLUMNS)


def planted_summary(outcomes: pd.DataFrame, eps: float) -> dict:
    """Recall overall and per transform, and the with-unrelated rate, at one eps."""
    at = outcomes[np.isclose(outcomes["eps"], eps)]
    if not len(at):
        return {}
    summary = {"planted_recall": float(at["found"].mean()), "planted_with_unrelated": float(at["with_unrelated"].mean())}
    for transform, rows in at.groupby("transform"):
        summary[f"recall_{transform}"] = float(rows["found"].mean())
    return summary
