"""Geometric verification of candidate pairs: shared local features that agree on one similarity
transform (rotation, scale, shift; mirrored too) are proof of a copy.

WORK IN PROGRESS (issue 15): the matcher and its measurement; not wired into the pipeline yet.

For each image, SIFT keypoints (OpenCV) on the grey image scaled to at most ``max_side`` pixels,
of the image and of its mirror. A pair is matched with Lowe's ratio test, then a similarity is fitted
with RANSAC (``cv2.estimateAffinePartial2D``); the inliers are the evidence. Images whose short side
is under ``min_side`` are not verified (too few features: CIFAR's 32 x 32).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neardup.decode import open_rgb


@dataclass
class Features:
    """Keypoints ``(n, 2)`` float32 and SIFT descriptors ``(n, 128)`` float32 of one image (``mirror``:
    of its left-right mirror), and the side length the image was scaled to."""

    points: np.ndarray
    descriptors: np.ndarray
    mirror_points: np.ndarray
    mirror_descriptors: np.ndarray
    usable: bool


@dataclass
class Match:
    """The result of verifying one pair: RANSAC inliers, matches that passed the ratio test, whether
    the best fit was against the mirror, and the fitted 2 x 3 transform (None without one)."""

    inliers: int
    matches: int
    mirrored: bool
    transform: np.ndarray | None


def extract(path: str, *, max_side: int = 512, max_keypoints: int = 1000, min_side: int = 64) -> Features:
    """SIFT features of ``path`` and of its mirror (see the module docstring)."""
    import cv2

    image = open_rgb(path)
    if min(image.size) < min_side:
        empty = np.zeros((0, 2), np.float32)
        return Features(empty, np.zeros((0, 128), np.float32), empty, np.zeros((0, 128), np.float32), False)
    grey = np.asarray(image.convert("L"))
    scale = max_side / max(grey.shape)
    if scale < 1:
        grey = cv2.resize(grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)),
                          interpolation=cv2.INTER_AREA)
    sift = cv2.SIFT_create(nfeatures=max_keypoints)

    def detect(pixels):
        keypoints, descriptors = sift.detectAndCompute(np.ascontiguousarray(pixels), None)
        points = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
        return points, (descriptors if descriptors is not None else np.zeros((0, 128), np.float32))

    points, descriptors = detect(grey)
    mirror_points, mirror_descriptors = detect(grey[:, ::-1])
    return Features(points, descriptors, mirror_points, mirror_descriptors, True)


def match(a: Features, b: Features, *, ratio: float = 0.75, threshold: float = 5.0, enough: int = 20) -> Match:
    """Verify one pair: ``a`` against ``b``, then against ``b``'s mirror unless ``enough`` inliers agree."""
    import cv2

    best = Match(0, 0, False, None)
    if not (a.usable and b.usable) or len(a.points) < 2:
        return best
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    for mirrored, points, descriptors in ((False, b.points, b.descriptors),
                                          (True, b.mirror_points, b.mirror_descriptors)):
        if len(points) < 2:
            continue
        knn = matcher.knnMatch(a.descriptors, descriptors, k=2)
        good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
        if len(good) >= 3:
            src = a.points[[g.queryIdx for g in good]]
            dst = points[[g.trainIdx for g in good]]
            transform, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                                             ransacReprojThreshold=threshold)
            n = int(inliers.sum()) if inliers is not None else 0
            if n > best.inliers:
                best = Match(n, len(good), mirrored, transform)
        if best.inliers >= enough:
            break
    return best
