"""The model input: every image decoded by the shared decoder, centre-cropped and resized on uint8,
in a pool of threads, batched in manifest order.

* Decoding is :func:`neardup.decode.open_rgb` (first frame, EXIF orientation applied, RGB), the same
  pixels every stage sees, for every format Pillow reads. JPEGs are DCT-scaled while decoding
  (``min_side``): an 800 x 600 photo for a 224 px model is decoded at 400 x 300, about a third of the
  work.
* Shrinking has two steps, the same for every format: first a whole-factor reduction that leaves the
  crop within twice the model's side (the DCT scaling does it for JPEGs, a box filter for the other
  formats), then one bicubic resize of the crop (OpenCV, on a view of the decoded pixels: no copy of
  the image). With under 2x left, skipping the antialiasing measured no loss (AP within 0.001, no
  planted transform worse), and OpenCV's resize costs a tenth of Pillow's antialiased one (0.13
  against 1.46 ms for 300 -> 224 px, more than the decoding itself):
  docs/performance.md#end-to-end-against-model-alone.
* Enlarging (images smaller than the input, e.g. CIFAR's 32 px at 96) is Pillow's bicubic, as it
  always was: OpenCV's sharper bicubic cost 0.009 AP on cifar10-dev.
* Pillow and OpenCV release the GIL while they decode and resize, so a few Python threads keep up
  with the model; their number is chosen by :class:`neardup.embed.Embedder` against the model's own
  threads.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import cv2
import numpy as np
from PIL import Image

from neardup.decode import open_rgb

log = logging.getLogger(__name__)

#: How :func:`load_pixels` makes the model input, part of the vector cache's key: vectors made another
#: way (before issue 28: Pillow's antialiased resize for every image) are never mixed with these.
INPUT = "dct-or-box, opencv bicubic down, pillow bicubic up"


def crop_box(width: int, height: int, crop_fraction: float) -> tuple[int, int, int, int]:
    """The centred square ``(left, top, right, bottom)`` whose side is ``crop_fraction`` of the short side."""
    side = max(1, int(min(width, height) * crop_fraction))
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def load_pixels(path: str, *, size: int, crop_fraction: float) -> np.ndarray:
    """One image as the model sees it.

    Parameters
    ----------
    path : str
        Image file.
    size : int
        Output side in pixels.
    crop_fraction : float
        Fraction of the short side kept by the centre crop (1.0 keeps the whole short side).

    Returns
    -------
    ndarray of uint8, shape (size, size, 3): RGB.

    Raises
    ------
    OSError, ValueError, and whatever a Pillow decoder raises, for a file that cannot be decoded.
    """
    image = open_rgb(path, min_side=math.ceil(size / crop_fraction))
    box = crop_box(*image.size, crop_fraction)
    side = box[2] - box[0]
    if side < size:  # enlarged: Pillow's bicubic, which the model's features are measured on (cifar10-dev)
        return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, box=box))
    factor = side // size  # 2 or more only where the DCT scaling could not get within 2x
    if factor >= 2:  # a box filter by that whole factor leaves the crop within 2x of the output
        pixels = np.asarray(image.reduce(factor, box=box))
    else:
        pixels = np.asarray(image)[box[1]:box[3], box[0]:box[2]]
    if pixels.shape[:2] == (size, size):
        return np.ascontiguousarray(pixels)
    return cv2.resize(pixels, (size, size), interpolation=cv2.INTER_CUBIC)


def pixel_batches(paths, *, size: int, crop_fraction: float, batch_size: int, threads: int,
                  failed: list | None = None, overlap: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decode ``paths`` in ``threads`` threads and yield them in order, ``batch_size`` at a time.

    With ``overlap``, the next batches are decoded while the caller works on this one (at most
    ``4 * batch_size``, and at least ``2 * threads``, images in flight, so memory stays bounded on any
    dataset); without, nothing is decoded until the caller asks for the next batch, so decoding and
    the caller's work never compete for the cores. An image that cannot be decoded is left out of
    its batch and its index appended to ``failed`` (with a debug line saying why).

    Yields
    ------
    indices : ndarray of int, shape (b,)
        Positions in ``paths``, increasing.
    pixels : ndarray of uint8, shape (b, size, size, 3)
        ``b <= batch_size``; the last batch may be shorter, and a batch whose images all failed is
        skipped.
    """
    n = len(paths)
    window = max(4 * batch_size, 2 * threads) if overlap else batch_size
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="neardup-decode") as pool:
        pending: deque = deque()
        submitted = 0
        while submitted < n or pending:
            while submitted < n and len(pending) < window:
                pending.append((submitted, pool.submit(load_pixels, str(paths[submitted]), size=size,
                                                       crop_fraction=crop_fraction)))
                submitted += 1
            indices, images = [], []
            while pending and len(indices) < batch_size:
                index, future = pending.popleft()
                try:
                    images.append(future.result())
                    indices.append(index)
                except Exception as exc:  # noqa: BLE001 - any decoder failure: listed by the caller
                    log.debug("could not decode %s: %s", paths[index], exc)
                    if failed is not None:
                        failed.append(index)
            if indices:
                yield np.asarray(indices, dtype=np.int64), np.stack(images)
