"""Image edits that turn an image into a *near duplicate* of itself.

Used by the offline demo and for planting known duplicates into user data, so that
the pipeline can be scored against ground truth. Every transform takes an RGB
:class:`PIL.Image.Image` and a :class:`numpy.random.Generator` (all randomness comes from
it, so the same seed gives the same output) and returns a new RGB image that differs
from its input (except ``grayscale`` on an image that is already grey).

Names (keys of :data:`TRANSFORMS`). :data:`EASY_TRANSFORMS` holds the first nine, the
original edits; :data:`HARD_TRANSFORMS` the last five, "hard cases" that look like real
natural duplicates (a slightly shifted or zoomed shot, a colour-graded copy, a web thumbnail):

``jpeg``
    re-encode in memory as JPEG at quality 30-95.
``downscale``
    resize to 30-70 % of the width and height.
``crop``
    keep 80-95 % of each side at a random offset.
``hflip``
    mirror left-right.
``brightness_contrast``
    brightness and contrast factors each in 0.7-0.9 or 1.1-1.3.
``rotate``
    rotate by 2-6 degrees either way, then crop away the black corners.
``grayscale``
    convert to greyscale (stored as RGB).
``pad``
    add a solid-colour border of 3-10 % of the width/height on every side.
``text``
    overlay a short caption with Pillow's built-in font.
``shift``
    translate by 3-8 % of the width and of the height (random sign per axis) by cropping
    that much from one side of each axis; the output is smaller, with no border.
``crop_hard``
    keep 70-90 % of each side at a random offset.
``zoom``
    centre crop to 1/z of each side, z in 1.1-1.3, resized back (bicubic) to the input size.
``color``
    saturation factor in 0.5-0.8 or 1.2-1.6, then contrast factor in 0.8-0.9 or 1.1-1.2.
``resize_jpeg``
    downscale (bicubic) to 25-50 % of each side, then re-encode as JPEG at quality 40-70.
"""

from __future__ import annotations

import io
import logging
import math
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

log = logging.getLogger(__name__)

Transform = Callable[[Image.Image, np.random.Generator], Image.Image]

_CAPTIONS = (
    "SAMPLE", "© 2024", "photo: field team", "do not share", "IMG_0042", "preview",
    "draft v2", "copyright", "plot 7 / row 3", "www.example.org",
)


def _encode_jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Round-trip ``image`` through an in-memory JPEG at ``quality``."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def _jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _encode_jpeg(image, int(rng.integers(30, 96)))


def _downscale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = float(rng.uniform(0.3, 0.7))
    w, h = image.size
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _random_crop(image: Image.Image, rng: np.random.Generator, lo: float, hi: float) -> Image.Image:
    """Keep a fraction in [lo, hi) of each side at a random offset."""
    w, h = image.size
    cw = max(1, round(w * rng.uniform(lo, hi)))
    ch = max(1, round(h * rng.uniform(lo, hi)))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return image.crop((x0, y0, x0 + cw, y0 + ch))


def _crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _random_crop(image, rng, 0.80, 0.95)


def _hflip(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(image)


def _factor(rng: np.random.Generator) -> float:
    """A factor in 0.7-0.9 or 1.1-1.3 (never close to 1, so the edit is visible)."""
    return 1.0 + float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.1, 0.3))


def _brightness_contrast(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(_factor(rng))
    return ImageEnhance.Contrast(image).enhance(_factor(rng))


def _inscribed_size(w: int, h: int, angle_deg: float) -> tuple[int, int]:
    """Largest axis-aligned rectangle inside a ``w`` x ``h`` rectangle rotated by ``angle_deg``."""
    a = math.radians(angle_deg)
    sin_a, cos_a = abs(math.sin(a)), abs(math.cos(a))
    long_side, short_side = max(w, h), min(w, h)
    if short_side <= 2.0 * sin_a * cos_a * long_side or abs(sin_a - cos_a) < 1e-10:
        x = 0.5 * short_side
        wr, hr = (x / sin_a, x / cos_a) if w >= h else (x / cos_a, x / sin_a)
    else:
        cos_2a = cos_a * cos_a - sin_a * sin_a
        wr, hr = (w * cos_a - h * sin_a) / cos_2a, (h * cos_a - w * sin_a) / cos_2a
    # one pixel of margin against the interpolated (darkened) edge
    return max(1, int(wr) - 2), max(1, int(hr) - 2)


def _rotate(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(2.0, 6.0))
    w, h = image.size
    rotated = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False)
    cw, ch = _inscribed_size(w, h, angle)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return rotated.crop((x0, y0, x0 + cw, y0 + ch))


def _grayscale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.convert("L").convert("RGB")


def _pad(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    frac = float(rng.uniform(0.03, 0.10))
    bx, by = max(1, round(w * frac)), max(1, round(h * frac))
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    return ImageOps.expand(image, border=(bx, by, bx, by), fill=colour)


def _text(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    caption = str(rng.choice(_CAPTIONS))
    size = max(8, round(h * rng.uniform(0.05, 0.09)))
    out = image.copy()
    draw = ImageDraw.Draw(out)
    while True:  # shrink the font until the caption fits the width
        font = ImageFont.load_default(size=size)
        stroke = max(1, size // 12)
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font, stroke_width=stroke)
        if right - left <= 0.95 * w or size <= 6:
            break
        size = max(6, int(size * 0.8))
    tw, th = right - left, bottom - top
    x = int(rng.integers(0, max(1, w - tw) + 1)) - left
    y = int(rng.integers(0, max(1, h - th) + 1)) - top
    fill = tuple(int(c) for c in rng.integers(200, 256, size=3))
    draw.text((x, y), caption, font=font, fill=fill, stroke_width=stroke, stroke_fill=(0, 0, 0))
    return out


def _shift(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    dx = min(w - 1, max(1, round(w * rng.uniform(0.03, 0.08))))
    dy = min(h - 1, max(1, round(h * rng.uniform(0.03, 0.08))))
    left, top = rng.random(2) < 0.5  # which side of each axis loses the strip
    x0, y0 = (dx if left else 0), (dy if top else 0)
    return image.crop((x0, y0, x0 + w - dx, y0 + h - dy))


def _crop_hard(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _random_crop(image, rng, 0.70, 0.90)


def _zoom(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    z = float(rng.uniform(1.1, 1.3))
    w, h = image.size
    cw, ch = max(1, round(w / z)), max(1, round(h / z))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return image.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BICUBIC)


def _color(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    sat = float(rng.uniform(0.5, 0.8)) if rng.random() < 0.5 else float(rng.uniform(1.2, 1.6))
    con = 1.0 + float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.1, 0.2))
    image = ImageEnhance.Color(image).enhance(sat)
    return ImageEnhance.Contrast(image).enhance(con)


def _resize_jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = float(rng.uniform(0.25, 0.5))
    w, h = image.size
    small = image.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BICUBIC)
    return _encode_jpeg(small, int(rng.integers(40, 71)))


#: All transforms by name; values take ``(rgb_image, rng)`` and return a new RGB image.
TRANSFORMS: dict[str, Transform] = {
    "jpeg": _jpeg,
    "downscale": _downscale,
    "crop": _crop,
    "hflip": _hflip,
    "brightness_contrast": _brightness_contrast,
    "rotate": _rotate,
    "grayscale": _grayscale,
    "pad": _pad,
    "text": _text,
    "shift": _shift,
    "crop_hard": _crop_hard,
    "zoom": _zoom,
    "color": _color,
    "resize_jpeg": _resize_jpeg,
}

#: The nine original transforms, in :data:`TRANSFORMS` order (the demo plants only these).
EASY_TRANSFORMS: tuple[str, ...] = (
    "jpeg", "downscale", "crop", "hflip", "brightness_contrast", "rotate", "grayscale", "pad", "text",
)
#: The five "hard case" transforms that mimic natural duplicates, in :data:`TRANSFORMS` order.
HARD_TRANSFORMS: tuple[str, ...] = ("shift", "crop_hard", "zoom", "color", "resize_jpeg")


def apply_transform(name: str, image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Apply the transform ``name`` to ``image``.

    Parameters
    ----------
    name : str
        A key of :data:`TRANSFORMS`.
    image : PIL.Image.Image
        Input of any mode and size (w, h); converted to RGB first.
    rng : numpy.random.Generator
        Source of all randomness; the same generator state gives the same output.

    Returns
    -------
    PIL.Image.Image
        A new RGB image; its size differs from (w, h) for ``downscale``, ``crop``,
        ``rotate``, ``pad``, ``shift``, ``crop_hard`` and ``resize_jpeg``.

    Raises
    ------
    ValueError
        If ``name`` is not a known transform (the message lists the valid names).
    """
    try:
        func = TRANSFORMS[name]
    except KeyError:
        raise ValueError(
            f"unknown transform {name!r}; valid names: {', '.join(TRANSFORMS)}"
        ) from None
    out = func(image.convert("RGB"), rng)
    return out if out.mode == "RGB" else out.convert("RGB")
