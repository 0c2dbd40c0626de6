"""SIFT keypoints of an image and of its mirror, for geometric verification (:mod:`neardup.verify`),
cached by image content.

SIFT (OpenCV) runs on the grey image scaled to at most ``max_side`` pixels, at most ``max_keypoints``
keypoints, with a low contrast threshold (:data:`CONTRAST`). The mirror's keypoints are derived
from the image's, not detected again. Images whose short side is under ``min_side`` get no
features (too few: CIFAR's 32 x 32). Features are cached under ``<cache.dir>/features/`` by content,
each file with a checksum checked before use.
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neardup.cache import CACHE_VERSION, descriptor_key
from neardup.decode import open_rgb
from neardup.runner import cpu_cores

log = logging.getLogger(__name__)

#: SIFT's contrastThreshold, an eighth of OpenCV's 0.04: low-texture photos (fur, sky, a smooth
#: crop) keep enough keypoints to be proven, while textured ones keep their ``max_keypoints``
#: strongest (docs/quality.md, "Geometric verification": 0.04, 0.01, 0.005 and 0.0025 measured).
CONTRAST = 0.005
#: Orientation bin ``o`` of a SIFT cell holds bin ``-o`` (mod 8) of the mirrored patch's cell.
MIRROR_BINS = (8 - np.arange(8)) % 8
ARRAYS = ("points", "descriptors", "mirror_points", "mirror_descriptors", "scale", "width")


@dataclass
class Features:
    """Keypoints ``(n, 2)`` float32 in the original image's pixels and SIFT descriptors ``(n, 128)``
    float32 of one image; ``mirror_*`` the same for its left-right mirror (in the mirror's pixels);
    ``scale`` the factor the image was scaled by for detection, ``width`` its width in pixels."""

    points: np.ndarray
    descriptors: np.ndarray
    mirror_points: np.ndarray
    mirror_descriptors: np.ndarray
    scale: float
    width: float
    usable: bool


def extract(path: str, *, max_side: int = 512, max_keypoints: int = 1000, min_side: int = 64,
            contrast: float = CONTRAST) -> Features:
    """SIFT features of ``path`` and of its mirror (see the module docstring); ``contrast`` is SIFT's
    ``contrastThreshold``."""
    import cv2

    image = open_rgb(path)
    empty = np.zeros((0, 2), np.float32)
    if min(image.size) < min_side:
        return Features(empty, np.zeros((0, 128), np.float32), empty, np.zeros((0, 128), np.float32), 1.0,
                        float(image.width), False)
    grey = np.asarray(image.convert("L"))
    scale = min(1.0, max_side / max(grey.shape))
    if scale < 1:
        grey = cv2.resize(grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)),
                          interpolation=cv2.INTER_AREA)
    sift = cv2.SIFT_create(nfeatures=max_keypoints, contrastThreshold=contrast)
    keypoints, descriptors = sift.detectAndCompute(np.ascontiguousarray(grey), None)
    found = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
    descriptors = descriptors if descriptors is not None else np.zeros((0, 128), np.float32)
    # the mirror's keypoints, without detecting again: OpenCV's SIFT finds a keypoint at (x, y) in the
    # mirror at (width - 0.5 - x, y), and its descriptor is this one with the 4 x 4 cells' rows reversed
    # and each cell's 8 orientation bins negated (measured: docs/quality.md)
    mirrored = np.column_stack([grey.shape[1] - 0.5 - found[:, 0], found[:, 1]]).astype(np.float32)
    mirror_descriptors = descriptors.reshape(-1, 4, 4, 8)[:, ::-1][:, :, :, MIRROR_BINS].reshape(-1, 128)
    return Features(found / np.float32(scale), descriptors, mirrored / np.float32(scale),
                    np.ascontiguousarray(mirror_descriptors), float(scale), float(image.width), True)


def _checksum(arrays: dict) -> str:
    digest = hashlib.sha256(b"neardup features\n")
    for name in ARRAYS + ("usable",):
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

    def get(self, sha256: str) -> Features | None:
        if self.folder is None:
            return None
        path = self.folder / f"{sha256}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in ARRAYS + ("usable", "checksum")}
            if _checksum(arrays) != str(arrays["checksum"]):
                raise ValueError("fails its checksum")
        except Exception as exc:  # noqa: BLE001 - truncated, garbage or edited: not trusted
            log.warning("cached features %s cannot be trusted (%s): deleted them; extracting again", path,
                        exc if isinstance(exc, ValueError) else type(exc).__name__)
            path.unlink(missing_ok=True)
            return None
        return Features(*(arrays[name] for name in ARRAYS[:4]), float(arrays["scale"]), float(arrays["width"]),
                        bool(arrays["usable"]))

    def put(self, sha256: str, features: Features) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {name: np.asarray(getattr(features, name)) for name in ARRAYS}
        arrays["usable"] = np.bool_(features.usable)
        tmp = self.folder / f".{sha256}.{os.getpid()}.tmp.npz"
        np.savez(tmp, checksum=np.str_(_checksum(arrays)), **arrays)
        os.replace(tmp, self.folder / f"{sha256}.npz")


def load_features(images, paths, content, params, *, cache_dir: str = "") -> tuple[dict, list]:
    """Features of rows ``images`` (``paths[i]``, cached by ``content[i]``), extracted in one thread per
    core where the cache has none. Returns ``{row: Features}`` and the rows that were extracted."""
    cache = FeatureCache(cache_dir, max_side=params.max_side, max_keypoints=params.max_keypoints,
                         min_side=params.min_side, features="sift", contrast=CONTRAST, format=3)
    features: dict[int, Features] = {}
    by_key: dict[str, Features] = {}
    todo = []
    for i in images:
        key = str(content[i])
        found = by_key.get(key) or cache.get(hashlib.sha256(key.encode()).hexdigest())
        if found is None:
            todo.append(i)
        else:
            features[i] = by_key[key] = found
    with ThreadPoolExecutor(cpu_cores()) as pool:  # OpenCV releases the GIL
        extracted = pool.map(lambda i: extract(str(paths[i]), max_side=params.max_side,
                                               max_keypoints=params.max_keypoints, min_side=params.min_side), todo)
        for i, f in zip(todo, extracted):
            features[i] = f
            key = str(content[i])
            if key not in by_key:
                by_key[key] = f
                cache.put(hashlib.sha256(key.encode()).hexdigest(), f)
    return features, todo
