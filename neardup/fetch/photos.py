"""The demo's raw material: real photos that installed packages ship (scikit-image's ``skimage.data``,
scikit-learn's ``load_sample_images``), cut into non-overlapping tiles of varied sizes."""
from __future__ import annotations

import logging
import zlib
from typing import Callable

import numpy as np

from neardup.contract import SourceError

log = logging.getLogger(__name__)

#: Tile side ranges (min, max) in pixels, tried from the largest until enough tiles exist.
TILE_LEVELS = ((96, 256), (80, 224), (72, 192), (64, 160), (56, 128), (48, 112))
#: Tiles whose greyscale standard deviation (0-255) is below this are near uniform and dropped.
MIN_TILE_STD = 12.0
#: Share of distinct tiles taken from greyscale photos (when enough colour tiles exist).
GREY_SHARE = 0.08
#: At most this share of distinct tiles comes from any one photo.
MAX_PHOTO_SHARE = 0.25

def _skimage(name: str, index: int | None = None, centre: float = 1.0) -> Callable[[], np.ndarray]:
    """Loader of ``skimage.data.<name>()`` (item ``index`` of a tuple), keeping the central
    ``centre`` fraction of each side."""

    def load() -> np.ndarray:
        import skimage.data

        out = getattr(skimage.data, name)()
        out = out[index] if index is not None else out
        h, w = out.shape[:2]
        dy, dx = round(h * (1 - centre) / 2), round(w * (1 - centre) / 2)
        return out[dy:h - dy, dx:w - dx]

    return load


def _sklearn(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(file_name)

    return load


#: (label, loader, is_grey). All load offline; colour photos first.
PHOTOS: tuple[tuple[str, Callable[[], np.ndarray], bool], ...] = (
    ("astronaut", _skimage("astronaut"), False),
    ("chelsea", _skimage("chelsea"), False),
    ("coffee", _skimage("coffee"), False),
    ("rocket", _skimage("rocket"), False),
    ("motorcycle", _skimage("stereo_motorcycle", 0), False),
    ("immunohistochemistry", _skimage("immunohistochemistry"), False),
    ("retina", _skimage("retina", centre=0.64), False),  # drop the black surround
    ("china", _sklearn("china.jpg"), False),
    ("flower", _sklearn("flower.jpg"), False),
    ("camera", _skimage("camera"), True),
    ("coins", _skimage("coins"), True),
)


def load_photos() -> list[tuple[str, np.ndarray, bool]]:
    photos = []
    for name, load, grey in PHOTOS:
        try:
            arr = np.asarray(load())
        except Exception as exc:  # noqa: BLE001 - a missing optional photo must not stop the demo
            log.warning("demo photo %r is unavailable (%s); continuing without it", name, exc)
            continue
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            log.warning("demo photo %r has unexpected dtype/shape %s %s; skipped", name, arr.dtype, arr.shape)
            continue
        photos.append((name, arr[..., :3] if arr.ndim == 3 else arr, grey))
    if not photos:
        raise SourceError("no demo photos could be loaded from scikit-image / scikit-learn; reinstall them")
    return photos


def _guillotine(w: int, h: int, lo: int, hi: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Partition a ``w`` x ``h`` area into rectangles (x0, y0, x1, y1) with sides in [lo, hi]."""
    out, stack = [], [(0, 0, w, h)]
    while stack:
        x0, y0, x1, y1 = stack.pop()
        rw, rh = x1 - x0, y1 - y0
        if rw < lo or rh < lo:
            continue
        can_x, can_y = rw >= 2 * lo, rh >= 2 * lo
        must = rw > hi or rh > hi or max(rw, rh) > 2 * min(rw, rh)
        if not (can_x or can_y) or (not must and rng.random() < 0.4):
            out.append((x0, y0, x1, y1))
            continue
        if can_x and (rw >= rh or not can_y):
            cut = x0 + int(rng.integers(lo, rw - lo + 1))
            stack += [(x0, y0, cut, y1), (cut, y0, x1, y1)]
        else:
            cut = y0 + int(rng.integers(lo, rh - lo + 1))
            stack += [(x0, y0, x1, cut), (x0, cut, x1, y1)]
    return sorted(out, key=lambda r: (r[1], r[0]))


def _tile_pool(photos, lo: int, hi: int, seed: int) -> list[tuple[int, tuple[int, int, int, int]]]:
    """All usable tiles at one size level as (photo index, rect)."""
    pool = []
    for p, (name, arr, _) in enumerate(photos):
        rng = np.random.default_rng([seed, zlib.crc32(name.encode()), lo, hi])
        grey = arr if arr.ndim == 2 else arr @ np.array([0.299, 0.587, 0.114])
        for x0, y0, x1, y1 in _guillotine(arr.shape[1], arr.shape[0], lo, hi, rng):
            if float(grey[y0:y1, x0:x1].std()) >= MIN_TILE_STD:
                pool.append((p, (x0, y0, x1, y1)))
    return pool


def select_tiles(photos, n: int, seed: int, rng: np.random.Generator):
    """Pick ``n`` tiles at the largest size level that has enough.

    At most :data:`MAX_PHOTO_SHARE` of the tiles come from one photo and about
    :data:`GREY_SHARE` from greyscale photos (more only when colour tiles run out).
    """
    cap = max(1, int(np.ceil(MAX_PHOTO_SHARE * n)))
    grey_quota = round(GREY_SHARE * n)
    best = 0
    for lo, hi in TILE_LEVELS:
        pool = _tile_pool(photos, lo, hi, seed)
        per_photo = np.bincount([p for p, _ in pool], minlength=len(photos))
        best = max(best, int(np.minimum(per_photo, cap).sum()))
        if np.minimum(per_photo, cap).sum() < n:
            continue
        order = rng.permutation(len(pool))
        counts = np.zeros(len(photos), dtype=int)
        taken: set[int] = set()
        n_grey = 0
        for strict in (True, False):
            for i in order:
                if len(taken) == n:
                    break
                p = pool[i][0]
                grey = photos[p][2]
                if i in taken or counts[p] >= cap:
                    continue
                if strict and (n_grey >= grey_quota if grey else len(taken) - n_grey >= n - grey_quota):
                    continue
                taken.add(int(i))
                counts[p] += 1
                n_grey += grey
        chosen = [pool[i] for i in taken]
        log.info("demo tiles: %d (%d from greyscale photos), sides %d-%d px", n, n_grey, lo, hi)
        return sorted(chosen, key=lambda t: (t[0], t[1][1], t[1][0]))
    raise ValueError(f"n_distinct={n} is too large: the demo photos give at most {best} distinct tiles")
