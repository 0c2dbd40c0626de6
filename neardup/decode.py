"""The one image decoder every stage uses: first frame, EXIF orientation applied, RGB.

fetch (:func:`neardup.images.inspect_image`), plant, embed (its Pillow path; its TensorFlow path
is used only for images with no EXIF rotation), hash and render all decode through :func:`open_rgb`,
so they see the same upright pixels of the same frame, and :func:`pixel_sha256` names them.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageFile, ImageOps

from neardup.files import is_url, open_input


class ImageTooLarge(ValueError):
    """The image's header announces more pixels than the cap (``fetch.max_pixels``); nothing was decoded."""

    def __init__(self, width: int, height: int, cap: int):
        self.width, self.height, self.cap = width, height, cap
        super().__init__(f"too large: {width} x {height} = {width * height} pixels > fetch.max_pixels ({cap})")


# Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) and its truncated-file switch are
# module globals. While any decode runs they are set to "no limit of Pillow's own" (the decoder
# checks the caller's cap from the header itself, so Pillow never pre-empts it or crashes above
# 2x its default) and "truncated files fail"; the first decoder in saves them, the last one out
# restores them, so concurrent decodes (embed's decode threads) never leave them changed.
_limits_lock = threading.Lock()
_limits_depth = 0
_limits_saved: tuple = ()


@contextmanager
def _decoder_settings():
    global _limits_depth, _limits_saved
    with _limits_lock:
        if _limits_depth == 0:
            _limits_saved = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = None, False
        _limits_depth += 1
    try:
        yield
    finally:
        with _limits_lock:
            _limits_depth -= 1
            if _limits_depth == 0:
                Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = _limits_saved


@dataclass
class Decoded:
    """An image as every stage sees it: ``image`` (RGB, upright, first frame, fully loaded, detached
    from the file), its file ``format`` (Pillow's name), its number of ``frames`` and the EXIF
    ``orientation`` that was applied (1: none); ``full_size`` the upright ``(width, height)`` at full
    scale (``image`` is smaller when decoded at a reduced DCT scale)."""

    image: Image.Image
    format: str
    frames: int
    orientation: int
    full_size: tuple[int, int]


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1..8), 1 when absent, invalid or unreadable."""
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block: the pixels are still fine, taken as stored
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def decode_image(path: str | os.PathLike, *, max_pixels: int | None, min_side: int | None = None,
                 long_side: int | None = None) -> Decoded:
    """Decode ``path`` the one way every stage does: first frame, EXIF orientation applied, RGB.

    Parameters
    ----------
    path : str or PathLike
        A file, or a URL (:mod:`neardup.files`).
    max_pixels : int or None
        Cap on width x height, checked from the header before any pixel is decoded (fetch passes
        ``fetch.max_pixels``; later stages pass None: their images were checked at fetch). Pillow's
        own decompression-bomb limit is off while decoding, so only this cap applies.
    min_side : int or None
        JPEG only: decode at the smallest DCT scale (1, 1/2, 1/4 or 1/8 of each side) that keeps both
        sides at least ``min_side`` pixels, which skips most of the decoding work when a photo is much
        larger than what the caller needs (embed). Other formats, and None, decode at full size.
    long_side : int or None
        JPEG only, the same for the longer side: at least ``long_side`` pixels (keypoints, which scale
        the image to a longest side). ``full_size`` tells the size at full scale.

    Raises
    ------
    ImageTooLarge
        Over the cap.
    UnidentifiedImageError, OSError, and whatever a Pillow decoder raises
        Not an image, truncated, unreadable.
    """
    with _decoder_settings(), (open_input(path) if is_url(path) else nullcontext(path)) as source:
        with Image.open(source) as im:
            width, height = im.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLarge(width, height, max_pixels)
            fmt = str(im.format)
            try:
                frames = int(getattr(im, "n_frames", 1) or 1)
            except Exception:  # noqa: BLE001 - broken later frames: the first is still read below
                frames = 1
            if frames > 1:
                im.seek(0)
            if min_side:
                im.draft(None, (int(min_side), int(min_side)))  # a no-op for formats other than JPEG
            elif long_side:
                ratio = min(1.0, long_side / max(width, height, 1))
                im.draft(None, (math.ceil(width * ratio), math.ceil(height * ratio)))
            im.load()
            orientation = _orientation(im)
            upright = ImageOps.exif_transpose(im) if orientation != 1 else im
            rgb = upright.convert("RGB")  # a new image (a copy when already RGB), detached from the file
    full = (height, width) if orientation in (5, 6, 7, 8) else (width, height)  # upright, at full scale
    return Decoded(image=rgb, format=fmt, frames=frames, orientation=orientation, full_size=full)


def open_rgb(path: str | os.PathLike, *, max_pixels: int | None = None, min_side: int | None = None) -> Image.Image:
    """The pixels every stage works on: first frame, EXIF orientation applied, RGB (see :func:`decode_image`)."""
    return decode_image(path, max_pixels=max_pixels, min_side=min_side).image


def pixel_sha256(image: Image.Image) -> str:
    """SHA-256 of decoded pixels: ``b"RGB <width>x<height>\\n"`` then the RGB bytes, row by row.

    Two files with the same decoded pixels (re-saved with other compression settings, metadata
    changed, an EXIF-rotated photo and its upright copy) get the same value.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    digest = hashlib.sha256(f"RGB {width}x{height}\n".encode())
    rows = max(1, (16 << 20) // max(1, 3 * width))  # hash in strips of ~16 MB: no second full copy
    for top in range(0, height, rows):
        digest.update(rgb.crop((0, top, width, min(height, top + rows))).tobytes())
    return digest.hexdigest()
