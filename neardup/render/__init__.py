"""render: figures of duplicate groups (thumbnails with id, label, distance) and the label-conflict table.

The quality report (:mod:`neardup.render.quality`), the HTML report (:mod:`neardup.render.html`) and
the review figures (:mod:`neardup.render.pairs`) live beside this module.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from neardup.engine import tqdm
from neardup.contract import CONFLICT_COLUMNS, LABEL_CONFLICTS, groups_at, label_conflict_groups, write_table
from neardup.decode import open_rgb
from neardup.render.sheet import visible

log = logging.getLogger(__name__)

MAX_PER_FIGURE = 8


def plain(text) -> str:
    """``text`` (an id, label, set or variant name) as matplotlib must be given it to draw it as it is:
    every ``$`` escaped, so a name such as ``a$b$.jpg`` or ``$\\frac{a}$`` is never parsed as mathtext
    (which draws it wrong or fails the whole figure). Use it for every data text that reaches a
    figure: titles, tick labels, legend entries. Control characters show as escapes (:func:`visible`)."""
    return visible(text).replace("$", r"\$")


def thumbnail(path: str, size: int, *, enlarge: bool = False) -> np.ndarray:
    """RGB thumbnail of ``path`` fitting in ``size x size``, shape (h, w, 3) uint8. With ``enlarge``, an
    image smaller than half of ``size`` is first enlarged by a whole factor, pixel for pixel (nearest)."""
    im = open_rgb(path, max_pixels=None)  # the shared decoder: upright, first frame (checked at fetch)
    factor = size // max(im.size) if enlarge else 1
    if factor >= 2:  # a small image (CIFAR's 32 px) shown large enough to judge, its pixels kept sharp
        im = im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST)
    im.thumbnail((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im)


def group_figure(members: pd.DataFrame, out: Path, *, title: str, thumb_size: int) -> None:
    """Save one PNG showing a group's images side by side, each under id / label / distance (at most
    :data:`MAX_PER_FIGURE`; the title counts the rest).

    ``members``: rows of one group with columns ``id, path, label, distance``.
    """
    from neardup.render.sheet import contact_sheet

    shown = members.head(MAX_PER_FIGURE)
    tiles = [(thumbnail(row["path"], thumb_size),
              [str(row["id"]), f"label: {row['label'] or '-'}", f"d={float(row['distance']):.3f}"])
             for _, row in shown.iterrows()]
    more = len(members) - len(shown)
    contact_sheet(tiles, out, title=title + (f"  (+{more} more)" if more > 0 else ""), tile_size=thumb_size)


def render_variant(groups: pd.DataFrame, manifest: pd.DataFrame, out_dir: Path, *, variant: str, eps: float,
               max_groups: int, thumb_size: int) -> pd.DataFrame:
    """Figures for the groups of one variant at ``eps``, closest groups first, label conflicts always.

    Returns
    -------
    DataFrame of label-conflict members (columns ``CONFLICT_COLUMNS``).
    """
    at = groups_at(groups, eps).copy()
    at["distance"] = at["distance"].astype(float)
    info = manifest.set_index("id")
    at["path"] = info.loc[at["id"], "path"].to_numpy()
    at["set"] = info.loc[at["id"], "set"].to_numpy()
    conflicts = set(label_conflict_groups(at))
    spread = at.groupby("group")["distance"].max().sort_values(kind="stable")
    chosen = list(spread.index[:max_groups]) + sorted(conflicts - set(spread.index[:max_groups]))
    rows = []
    for group in tqdm(chosen, desc=f"render {variant}", unit="group", leave=False):
        members = at[at["group"] == group]
        name = f"{'conflict_' if group in conflicts else ''}group_{group:04d}.png"
        group_figure(members, out_dir / variant / name, thumb_size=thumb_size,
                     title=f"{variant}  eps={eps:g}  group {group}  ({len(members)} images)")
        if group in conflicts:
            for _, m in members.iterrows():
                rows.append((variant, eps, group, m["id"], m["label"], m["set"], m["distance"], f"{variant}/{name}"))
    return pd.DataFrame(rows, columns=CONFLICT_COLUMNS)


def render_all(groups: dict, manifest: pd.DataFrame, metrics: dict, out_dir: Path, *, variants,
               max_groups: int, thumb_size: int) -> pd.DataFrame:
    """Render every variant at its chosen eps (``metrics[variant]['eps']``) and write ``label_conflicts.csv``.

    ``groups``: variant -> that variant's ``groups.csv`` table (every eps, or only the chosen one).
    """
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    tables = [render_variant(groups[variant], manifest, out_dir, variant=variant, eps=float(metrics[variant]["eps"]),
                         max_groups=max_groups, thumb_size=thumb_size) for variant in variants]
    conflicts = pd.concat(tables, ignore_index=True)
    write_table(conflicts, out_dir / LABEL_CONFLICTS)
    log.info("rendered %s; %d label-conflict groups", out_dir, conflicts.groupby(["variant", "group"]).ngroups)
    return conflicts
