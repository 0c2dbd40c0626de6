"""Image edits that turn an image into a *near duplicate* of itself.

Used by the offline demo and for planting known duplicates into user data, so that
the pipeline can be scored against ground truth. Every transform takes an RGB
:class:`PIL.Image.Image` and a :class:`numpy.random.Generator` (all randomness comes from
it, so the same seed gives the same output) and returns a new RGB image that differs
from its input (except ``grayscale`` on an image that is already grey).

Names (keys of :data:`TRANSFORMS`):

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


def _jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    quality = int(rng.integers(30, 96))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def _downscale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = float(rng.uniform(0.3, 0.7))
    w, h = image.size
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    cw = max(1, round(w * rng.uniform(0.80, 0.95)))
    ch = max(1, round(h * rng.uniform(0.80, 0.95)))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return image.crop((x0, y0, x0 + cw, y0 + ch))


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
}


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
        ``rotate`` and ``pad``.

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
