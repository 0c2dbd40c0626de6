"""SIFT keypoints of an image and of its mirror, for geometric verification (:mod:`neardup.verify`),
cached by image content and streamed: never every image's features in memory at once.

SIFT (OpenCV) runs on the grey image scaled to at most ``max_side`` pixels, at most ``max_keypoints``
keypoints, with a low contrast threshold (:data:`CONTRAST`). SIFT's descriptors are integers 0-255,
kept as ``uint8`` (128 bytes a keypoint). The mirror's keypoints are derived from the image's when
asked for, never detected again nor stored. Images whose short side is under ``min_side`` get no
features (too few: CIFAR's 32 x 32). Features are cached under ``<cache.dir>/features/`` by content,
each file with a checksum checked before use; :class:`FeatureStore` extracts what the cache lacks and
loads features back a few at a time (a bounded LRU).
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neardup.contract import atomic_write
from neardup.cache import CACHE_VERSION, descriptor_key
from neardup.decode import decode_image
from neardup.engine import ordered_map

log = logging.getLogger(__name__)

#: SIFT's contrastThreshold, an eighth of OpenCV's 0.04: low-texture photos (fur, sky, a smooth
#: crop) keep enough keypoints to be proven, while textured ones keep their ``max_keypoints``
#: strongest (docs/quality.md, "Geometric verification": 0.04, 0.01, 0.005 and 0.0025 measured).
CONTRAST = 0.005
#: Orientation bin ``o`` of a SIFT cell holds bin ``-o`` (mod 8) of the mirrored patch's cell.
MIRROR_BINS = (8 - np.arange(8)) % 8
#: What a cache file holds (and its checksum covers).
ARRAYS = ("points", "descriptors", "scale", "width", "detected_width", "usable")
#: Cache file format (in the cache folder's key): 4 = uint8 descriptors, no stored mirror.
FORMAT = 4
#: The glance: SIFT at this longest side and number of keypoints, about a sixth of the full
#: features' cost to extract and a tenth to match, to look at an image's nearest neighbour beyond
#: every eps before the full verification (docs/performance.md, "The whole pipeline at photo scale").
GLANCE_SIDE, GLANCE_KEYPOINTS = 160, 200


@dataclass
class Features:
    """Keypoints ``(n, 2)`` float32 in the original image's pixels and SIFT descriptors ``(n, 128)``
    uint8 of one image; ``scale`` the factor the image was scaled by for detection, ``width`` its
    width in pixels, ``detected_width`` the width SIFT saw. ``mirror_points`` / ``mirror_descriptors``
    are the same for its left-right mirror (in the mirror's pixels), derived on access."""

    points: np.ndarray
    descriptors: np.ndarray
    scale: float
    width: float
    detected_width: float
    usable: bool

    @property
    def mirror_points(self) -> np.ndarray:
        """OpenCV's SIFT finds a keypoint at (x, y) in the mirror at (width - 0.5 - x, y), in the
        pixels it detected in (docs/quality.md)."""
        x = (self.detected_width - 0.5) / self.scale - self.points[:, 0]
        return np.column_stack([x, self.points[:, 1]]).astype(np.float32)

    @property
    def mirror_descriptors(self) -> np.ndarray:
        """This descriptor with the 4 x 4 cells' rows reversed and each cell's 8 orientation bins negated."""
        flipped = self.descriptors.reshape(-1, 4, 4, 8)[:, ::-1][:, :, :, MIRROR_BINS]
        return np.ascontiguousarray(flipped.reshape(-1, 128))


def no_features(width: float) -> Features:
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8), 1.0, float(width), float(width),
                    False)


def grey_image(path: str, long_side: int, *, enlarge: bool = False) -> tuple[np.ndarray, float, tuple[int, int]]:
    """``(grey uint8, scale, (width, height))``: ``path`` in grey with its longest side scaled to
    ``long_side`` (never enlarged unless ``enlarge``), a JPEG decoded at a reduced DCT scale; ``scale``
    the factor from the image's own pixels, ``(width, height)`` its full size."""
    import cv2

    decoded = decode_image(path, max_pixels=None, long_side=long_side)
    width, height = decoded.full_size
    scale = long_side / max(width, height)
    scale = scale if enlarge else min(1.0, scale)
    grey = np.asarray(decoded.image.convert("L"))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if (grey.shape[1], grey.shape[0]) != size:
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey, scale, (width, height)


def extract(path: str, *, max_side: int = 512, max_keypoints: int = 1000, min_side: int = 64,
            contrast: float = CONTRAST) -> Features:
    """SIFT features of ``path`` (see the module docstring); ``contrast`` is SIFT's ``contrastThreshold``."""
    import cv2

    grey, scale, (width, height) = grey_image(path, max_side)
    if min(width, height) < min_side:
        return no_features(width)
    sift = cv2.SIFT_create(nfeatures=max_keypoints, contrastThreshold=contrast)
    keypoints, descriptors = sift.detectAndCompute(np.ascontiguousarray(grey), None)
    found = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
    # OpenCV's float descriptors are whole numbers 0-255 (saturated to a byte): uint8 loses nothing
    descriptors = (np.zeros((0, 128), np.uint8) if descriptors is None
                   else np.clip(np.rint(descriptors), 0, 255).astype(np.uint8))
    return Features(found / np.float32(scale), descriptors, float(scale), float(width), float(grey.shape[1]), True)


def _checksum(arrays: dict) -> str:
    digest = hashlib.sha256(b"neardup features\n")
    for name in ARRAYS:
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name} {value.dtype.str} {value.shape}\n".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Features by image content sha256 under ``<cache.dir>/features/<settings key>/<sha>.npz``, each
    file with a checksum of its arrays; one that is unreadable or fails it is deleted with a warning
    and extracted again. ``root`` empty: no cache."""

    def __init__(self, root: str, **settings):
        self.folder = Path(root) / "features" / descriptor_key(version=CACHE_VERSION, **settings) if root else None

    def path(self, sha256: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{sha256}.npz"

    def get(self, sha256: str) -> Features | None:
        path = self.path(sha256)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in ARRAYS + ("checksum",)}
            if _checksum(arrays) != str(arrays["checksum"]):
                raise ValueError("fails its checksum")
        except Exception as exc:  # noqa: BLE001 - truncated, garbage or edited: not trusted
            log.warning("cached features %s cannot be trusted (%s): deleted them; extracting again", path,
                        exc if isinstance(exc, ValueError) else type(exc).__name__)
            path.unlink(missing_ok=True)
            return None
        return Features(arrays["points"], arrays["descriptors"], float(arrays["scale"]), float(arrays["width"]),
                        float(arrays["detected_width"]), bool(arrays["usable"]))

    def put(self, sha256: str, features: Features) -> None:
        if self.folder is None:
            return
        arrays = {name: np.asarray(getattr(features, name)) for name in ARRAYS}
        atomic_write(self.folder / f"{sha256}.npz", lambda tmp: np.savez(tmp, checksum=np.str_(_checksum(arrays)),
                                                                         **arrays), suffix=".npz")


class FeatureStore:
    """The features of a set of images, extracted once into the cache and loaded back a few at a time.

    :meth:`prepare` extracts (one thread per core, with a progress bar) the images the cache lacks and
    writes them there, keeping none in memory; :meth:`get` loads one back through an LRU of at most
    ``max_images`` feature sets (a few hundred KB each). Without ``cache_dir`` the cache is a
    temporary folder, deleted on :meth:`close`. An image whose features cannot be extracted (an error
    while decoding it, or in OpenCV) is logged, counted in ``errors`` and gets no features.

    Parameters
    ----------
    paths, content : sequences of str, length n
        Each row's image file and content key (features are shared by content).
    params : VerifyParams
        ``max_side``, ``max_keypoints``, ``min_side``.
    glance : bool
        The glance's features instead (:data:`GLANCE_SIDE`, :data:`GLANCE_KEYPOINTS`), cached apart.
    """

    def __init__(self, paths, content, params, *, cache_dir: str = "", max_images: int = 1024,
                 glance: bool = False):
        self._tmp = None if cache_dir else tempfile.TemporaryDirectory(prefix="neardup-features-")
        self.max_side = min(GLANCE_SIDE, params.max_side) if glance else params.max_side
        self.max_keypoints = min(GLANCE_KEYPOINTS, params.max_keypoints) if glance else params.max_keypoints
        self.cache = FeatureCache(cache_dir or self._tmp.name, max_side=self.max_side,
                                  max_keypoints=self.max_keypoints, min_side=params.min_side, features="sift",
                                  contrast=CONTRAST, format=FORMAT)
        self.paths, self.content, self.params = paths, content, params
        self.what = "glance keypoints" if glance else "keypoints"
        self.max_images = max_images
        self._lru: OrderedDict[str, Features] = OrderedDict()
        self._failed: dict[str, str] = {}
        self.errors: list[tuple[str, str]] = []  # (path, reason)
        self.extracted = 0
        self.loads = 0
        self.peak = 0  # the most feature sets held at once

    def _key(self, row: int) -> str:
        return hashlib.sha256(str(self.content[row]).encode()).hexdigest()

    def _extract(self, row: int) -> Features | str:
        try:
            return extract(str(self.paths[row]), max_side=self.max_side, max_keypoints=self.max_keypoints,
                           min_side=self.params.min_side)
        except Exception as exc:  # noqa: BLE001 - one bad image never kills the run
            return f"{type(exc).__name__}: {exc}"

    def prepare(self, rows, *, progress: bool = True) -> None:
        """Extract the features of ``rows`` that the cache does not hold (each content once), with a
        progress bar and a summary line unless ``progress`` is False."""
        todo, seen = [], set()
        for row in rows:
            key = self._key(row)
            if key not in seen:
                seen.add(key)
                if not self.cache.path(key).is_file():
                    todo.append(row)
        if not todo:
            return
        start = time.perf_counter()
        results = ordered_map(self._extract, todo, desc=self.what if progress and len(todo) >= 50 else "",
                              unit="img")  # one thread per core: OpenCV releases the GIL
        for row, result in zip(todo, results):
            if isinstance(result, str):
                self._fail(row, result)
            else:
                self.cache.put(self._key(row), result)
        seconds = time.perf_counter() - start
        self.extracted += len(todo)
        if progress:
            log.info("%s of %d images extracted in %.1f s (%.1f images/s)", self.what, len(todo), seconds,
                     len(todo) / max(seconds, 1e-9))

    def _fail(self, row: int, reason: str) -> None:
        key = self._key(row)
        if key not in self._failed:
            self._failed[key] = reason
            self.errors.append((str(self.paths[row]), reason))
            log.warning("keypoints of %s: %s; its pairs keep their distance", self.paths[row], reason)

    def failed(self, row: int) -> bool:
        """Whether row ``row``'s features could not be extracted."""
        return self._key(row) in self._failed

    def get(self, row: int) -> Features:
        """Row ``row``'s features: from memory, the cache, or extracted now (not usable if that failed)."""
        key = self._key(row)
        found = self._lru.get(key)
        if found is not None:
            self._lru.move_to_end(key)
            return found
        if key in self._failed:
            return no_features(0)
        found = self.cache.get(key)
        if found is None:
            result = self._extract(row)
            if isinstance(result, str):
                self._fail(row, result)
                return no_features(0)
            self.cache.put(key, result)
            found = result
        self.loads += 1
        self._lru[key] = found
        while len(self._lru) > self.max_images:
            self._lru.popitem(last=False)
        self.peak = max(self.peak, len(self._lru))
        return found

    def close(self) -> None:
        self._lru.clear()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
