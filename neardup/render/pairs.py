"""Pair figures: the two images of a proposed pair side by side, for review."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from neardup.render import thumbnail
from neardup.render.sheet import contact_sheet

log = logging.getLogger(__name__)


def figure_name(row) -> str:
    """Figure path of a queue row relative to the figures folder: ``<variant>/pair_<hash of a, b>.png``."""
    digest = hashlib.sha1(f"{row['a']}\0{row['b']}".encode()).hexdigest()[:16]
    return f"{str(row['variant']).replace('/', '_') or 'variant'}/pair_{digest}.png"


#: Most agreeing keypoints a proof draws as lines (evenly sampled); more would be a smear.
MAX_LINES = 30


def proof_text(match) -> str:
    """What a verified pair's match proves, in words (and how many of its lines are drawn)."""
    drawn = f", {MAX_LINES} of them drawn" if match.inliers > MAX_LINES else ""
    return f"verified: {match.inliers} keypoints agree{drawn}" + (" (mirrored)" if match.mirrored else "")


def transform_text(match) -> str:
    """The kind of map the keypoints agree on: a similarity, or an affine map that stretches one axis
    (a copy resized to another aspect ratio)."""
    if match.transform is None:
        return "one transform"
    (a, b), (c, d) = np.asarray(match.transform, float)[:, :2]
    scale = max(np.hypot(a, c), 1e-12)
    similar = abs(a - d) <= 0.02 * scale and abs(b + c) <= 0.02 * scale
    return "one rotation, scale and shift" if similar else "one affine map (stretched: resized to another aspect ratio)"


def match_lines(match, thumbs, widths) -> np.ndarray:
    """A match's inlier keypoints ``(k, 4)`` in the two thumbnails' pixels (``widths``: the images' own),
    at most :data:`MAX_LINES` of them, evenly spread over the match's order (the same every time)."""
    scale_a, scale_b = (thumb.shape[1] / float(width) for thumb, width in zip(thumbs, widths))
    pairs = np.asarray(match.pairs)
    if len(pairs) > MAX_LINES:
        pairs = pairs[np.linspace(0, len(pairs) - 1, MAX_LINES).round().astype(int)]
    return pairs * np.array([scale_a, scale_a, scale_b, scale_b], dtype=np.float32)


def pair_figure(row, manifest: pd.DataFrame, out: Path | None, *, thumb_size: int = 256, match=None):
    """Save a PNG of one pair: both images side by side with id, label, set; distance and verdict on top;
    with ``match`` (a verified :class:`neardup.verify.Match`), its agreeing keypoints joined by lines.
    Returns the sheet (an RGB image)."""
    info = manifest.set_index("id")
    tiles, widths = [], []
    for image_id in (row["a"], row["b"]):
        m = info.loc[image_id]
        label = m["label"] if m["label_name"] in ("", m["label"]) else f"{m['label']} ({m['label_name']})"
        tiles.append((thumbnail(m["path"], thumb_size),
                      [str(image_id), f"label: {label or '-'}   set: {m['set'] or '-'}", f"{m['width']}x{m['height']}"]))
        widths.append(m["width"])
    same = "  byte-identical" if row["sha_a"] == row["sha_b"] else ""
    verdict = f"  verdict: {row['verdict']}" if row.get("verdict") else ""
    distance = float(row["distance"])
    told = f"distance {distance:.4f}" if distance == distance else "joined through other group members"
    proof = f"  {proof_text(match)}" if match is not None else ""
    lines = match_lines(match, [t for t, _ in tiles], widths) if match is not None else None
    return contact_sheet(tiles, out, title=f"{row['variant']}  {told}{same}{verdict}{proof}", tile_size=thumb_size,
                         lines=lines)


def draw_pair_figures(queue: pd.DataFrame, manifest: pd.DataFrame, out_dir: Path, *, max_figures: int,
                      thumb_size: int = 256, matches: dict | None = None) -> pd.DataFrame:
    """Draw up to ``max_figures`` pair figures: pending pairs first, each part closest first; a pair in
    ``matches`` (``{(a, b): Match}``, the verified ones) shows its agreeing keypoints.

    Returns a copy of ``queue`` whose ``figure`` column holds the PNG path relative to ``out_dir``
    (``<variant>/pair_<hash>.png``) for drawn pairs and ``''`` for the others.
    """
    out_dir = Path(out_dir)
    queue = queue.reset_index(drop=True)
    queue["figure"] = ""
    done = queue["verdict"].fillna("").astype(str) != "" if "verdict" in queue.columns else False
    order = queue.assign(_done=done).sort_values(["_done", "distance", "a", "b"], na_position="last", kind="stable")
    order = order.index[:max(0, max_figures)]
    for idx in order:
        name = figure_name(queue.loc[idx])
        row = queue.loc[idx]
        pair_figure(row, manifest, out_dir / name, thumb_size=thumb_size,
                    match=(matches or {}).get((row["a"], row["b"])))
        queue.loc[idx, "figure"] = name
    log.info("%d pair figures in %s", len(order), out_dir)
    return queue
