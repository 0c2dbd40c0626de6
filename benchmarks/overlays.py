"""An overlay set: different real photos that share what datasets stamp on them, and real copies.

Built from the demo's sources (scikit-image and scikit-learn photos): each photo is a distinct crop
of a source (two per source, side by side, never overlapping), 480 x 360. Each photo gets each of
four overlays, drawn at the same frame position on every photo:

- ``trap``: a camera-trap info bar along the bottom (a logo, a date, a time and a temperature that
  change from photo to photo);
- ``stamp``: a date stamp burned into the bottom-right corner (its date changes);
- ``watermark``: a semi-transparent centred watermark (large text);
- ``frame``: a UI frame (a title bar with a name and buttons, a side panel, a status bar).

Some photos also get real copies made *after* the overlay (so they carry it too): a crop, a strong
JPEG, a thumbnail and a mirror. The truth: two images are copies when they come from the same photo
(``photo``), whatever their overlay; different photos sharing an overlay must never be proven copies.

    .venv/bin/python benchmarks/overlays.py --out /tmp/overlays      # writes the set, then measures it
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont, ImageOps

OVERLAYS = ("trap", "stamp", "watermark", "frame")
COPIES = ("crop", "jpeg", "thumbnail", "mirror")
SIZE = (480, 360)


def sources() -> dict[str, np.ndarray]:
    """The demo's real photos (RGB uint8)."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
            "rocket": data.rocket(), "china": china, "flower": flower, "motorcycle": data.stereo_motorcycle()[0],
            "hubble": data.hubble_deep_field(), "immuno": data.immunohistochemistry(), "retina": data.retina()}


def photos(n: int) -> dict[str, Image.Image]:
    """``n`` distinct photos: the left and right halves of the sources, each resized to :data:`SIZE`."""
    out = {}
    for name, pixels in sources().items():
        h, w = pixels.shape[:2]
        for side, box in (("l", (0, 0, w // 2, h)), ("r", (w // 2, 0, w, h))):
            out[f"{name}-{side}"] = Image.fromarray(pixels[..., :3]).crop(box).resize(SIZE, Image.Resampling.LANCZOS)
    return dict(list(out.items())[:n])


def _font(size: int):
    return ImageFont.load_default(size=size)


def overlay(image: Image.Image, kind: str, k: int) -> Image.Image:
    """``image`` with overlay ``kind``; ``k`` (the photo's number) varies its changing text."""
    out = image.convert("RGB").copy()
    w, h = out.size
    draw = ImageDraw.Draw(out, "RGBA")
    date = f"2023-{1 + k % 12:02d}-{1 + (7 * k) % 28:02d}"
    if kind == "trap":
        bar = round(h * 0.08)
        draw.rectangle((0, h - bar, w, h), fill=(0, 0, 0, 255))
        draw.text((8, h - bar + 4), "WILDCAM", font=_font(bar - 8), fill=(240, 160, 0))
        draw.text((w * 0.32, h - bar + 6), f"{date} {k % 24:02d}:{(13 * k) % 60:02d}:{(29 * k) % 60:02d}",
                  font=_font(bar - 12), fill=(255, 255, 255))
        draw.text((w * 0.8, h - bar + 6), f"{-5 + (3 * k) % 35}\u00b0C", font=_font(bar - 12), fill=(255, 255, 255))
    elif kind == "stamp":
        draw.text((w * 0.62, h * 0.88), date.replace("-", " "), font=_font(round(h * 0.07)), fill=(255, 140, 20),
                  stroke_width=1, stroke_fill=(90, 40, 0))
    elif kind == "watermark":
        font = _font(round(h * 0.16))
        draw.text((w / 2, h / 2), "\u00a9 STOCKPIX", font=font, fill=(255, 255, 255, 110), anchor="mm",
                  stroke_width=2, stroke_fill=(0, 0, 0, 110))
        draw.text((w / 2, h / 2 + h * 0.14), "www.stockpix.example", font=_font(round(h * 0.06)),
                  fill=(255, 255, 255, 110), anchor="mm")
    elif kind == "frame":
        title, side, status = round(h * 0.09), round(w * 0.12), round(h * 0.06)
        draw.rectangle((0, 0, w, title), fill=(45, 48, 56))
        draw.text((10, title / 2), "PhotoViewer - holiday.jpg", font=_font(round(title * 0.5)), fill=(230, 230, 230),
                  anchor="lm")
        for i, colour in enumerate(((255, 95, 86), (255, 189, 46), (39, 201, 63))):
            cx = w - 20 - 24 * i
            draw.ellipse((cx - 8, title / 2 - 8, cx + 8, title / 2 + 8), fill=colour)
        draw.rectangle((0, title, side, h), fill=(60, 63, 72))
        for i, label in enumerate(("Library", "Albums", "People", "Places", "Trash")):
            draw.text((8, title + 12 + i * 26), label, font=_font(15), fill=(210, 210, 210))
        draw.rectangle((side, h - status, w, h), fill=(35, 37, 43))
        draw.text((side + 8, h - status / 2), "100%   4032 x 3024   1 of 250", font=_font(round(status * 0.55)),
                  fill=(190, 190, 190), anchor="lm")
    else:
        raise ValueError(f"unknown overlay {kind!r}")
    return out


def copy(image: Image.Image, kind: str) -> Image.Image:
    """A real copy of ``image``: a crop, a strong JPEG (saved by the caller), a thumbnail or a mirror."""
    w, h = image.size
    if kind == "crop":
        return image.crop((round(w * 0.1), round(h * 0.06), round(w * 0.95), round(h * 0.95)))
    if kind == "thumbnail":
        return image.resize((w * 2 // 5, h * 2 // 5), Image.Resampling.LANCZOS)
    if kind == "mirror":
        return ImageOps.mirror(image)
    return image


def make_overlay_set(out: Path, *, n_photos: int = 20, n_copied: int = 5) -> pd.DataFrame:
    """Write the set under ``out`` and return its table ``path, photo, overlay, copy``: every photo
    with every overlay, and for the first ``n_copied`` photos each copy of each overlaid photo."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (name, photo) in enumerate(photos(n_photos).items()):
        for kind in OVERLAYS:
            stamped = overlay(photo, kind, k)
            path = out / f"{kind}_{name}.jpg"
            stamped.save(path, quality=92)
            rows.append((str(path), name, kind, ""))
            if k < n_copied:
                for how in COPIES:
                    path = out / f"{kind}_{name}_{how}.jpg"
                    copy(stamped, how).save(path, quality=35 if how == "jpeg" else 90)
                    rows.append((str(path), name, kind, how))
    return pd.DataFrame(rows, columns=["path", "photo", "overlay", "copy"])


def pairs_to_judge(table: pd.DataFrame) -> tuple[list, list]:
    """``(different, copies)``: index pairs of different photos sharing an overlay (originals only),
    and of each copy with its overlaid original."""
    originals = table[table["copy"] == ""]
    different = [(a, b) for _, group in originals.groupby("overlay") for a, b in itertools.combinations(group.index, 2)]
    first = {(r.photo, r.overlay): i for i, r in originals.iterrows()}
    copies = [(first[(r.photo, r.overlay)], i) for i, r in table[table["copy"] != ""].iterrows()]
    return different, copies


def judge(table: pd.DataFrame, params) -> pd.DataFrame:
    """Every pair of :func:`pairs_to_judge`, verified as the pipeline does: ``a, b, kind, overlay,
    copy, inliers, matches, keypoints`` (the keypoints alone prove), ``agreement`` (the pixels'
    share, :func:`neardup.geometry.agreement`; NaN where the keypoints do not prove) and ``proven``."""
    from neardup.keypoints import extract
    from neardup.verify import agreement, match, proof

    features = [extract(p, max_side=params.max_side, max_keypoints=params.max_keypoints, min_side=params.min_side)
                for p in table["path"]]
    different, copies = pairs_to_judge(table)
    rows = []
    for kind, pairs in (("different", different), ("copy", copies)):
        for a, b in pairs:
            m = match(features[a], features[b])
            path_a, path_b = table.at[a, "path"], table.at[b, "path"]
            share = agreement(path_a, path_b, m) if m.proves(params) else None
            rows.append((a, b, kind, table.at[a, "overlay"], table.at[b, "copy"], m.inliers, m.matches,
                         m.proves(params), np.nan if share is None else share, proof(m, path_a, path_b, params)))
    return pd.DataFrame(rows, columns=["a", "b", "kind", "overlay", "copy", "inliers", "matches", "keypoints",
                                       "agreement", "proven"])


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from neardup.params import default_params
    from neardup.params import params_from_dict

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = params_from_dict(default_params(), "cluster").verify
    start = time.perf_counter()
    table = make_overlay_set(args.out)
    judged = judge(table, params)
    print(f"{len(table)} images, {len(judged)} pairs judged in {time.perf_counter() - start:.1f} s")
    print("| pairs | overlay | n | proven by the keypoints | agreement: min / max | proven |\n|---|---|---|---|---|---|")
    for (kind, over), group in judged.groupby(["kind", "overlay"]):
        print(f"| {kind} | {over} | {len(group)} | {int(group['keypoints'].sum())} | "
              f"{group['agreement'].min():.2f} / {group['agreement'].max():.2f} | {int(group['proven'].sum())} |")
    copies, different = judged[judged["kind"] == "copy"], judged[judged["kind"] == "different"]
    print("\ncopies by transform: proven / n, smallest agreement")
    for how, group in copies.groupby("copy"):
        print(f"  {how}: {int(group['proven'].sum())} / {len(group)}, {group['agreement'].min():.3f}")
    print(f"\nmargin: smallest agreement of a copy {copies['agreement'].min():.3f}; largest of two different photos "
          f"whose keypoints agree {different['agreement'].max():.3f} (min_agreement {params.min_agreement})")


if __name__ == "__main__":
    main()
