"""The geometry of one pair: do two images' local features agree on one transform?

Lowe's ratio test matches the keypoints of ``a`` with those of ``b`` (and of ``b``'s mirror), then a
similarity is fitted with RANSAC (``cv2.estimateAffinePartial2D``), or an affine map when more matches
agree on it (:func:`fit`); the inliers, counted once per keypoint location, are the evidence
(:class:`Match`, :meth:`Match.proves`). Degenerate input and whatever RANSAC returns for it never
raise: a non-finite or collapsed transform is no transform. :mod:`neardup.verify` runs this over a
pair graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neardup.keypoints import Features

#: An affine fit may scale one axis at most this many times the other (aspect ratio changes).
MAX_STRETCH = 3.0


@dataclass
class Match:
    """The result of verifying one pair: RANSAC inliers (distinct locations, :func:`distinct_points`),
    matches that passed the ratio test, whether the best fit was against the mirror, the fitted 2 x 3
    transform (None without one) and the inlier keypoints ``(k, 4)``, ``k >= inliers`` (a location
    with several orientations repeats): ``x_a, y_a, x_b, y_b`` in each image's own pixels (b unmirrored)."""

    inliers: int
    matches: int
    mirrored: bool
    transform: np.ndarray | None
    pairs: np.ndarray

    def proves(self, params) -> bool:
        """Proof of a copy: at least ``params.min_inliers`` inliers, and at least ``params.min_ratio``
        of the ratio-test matches among them (a repeated pattern, a lattice or a fence, gives a few
        inliers among many matches that disagree)."""
        return self.inliers >= params.min_inliers and self.inliers >= params.min_ratio * self.matches


def distinct_points(src: np.ndarray, dst: np.ndarray) -> int:
    """Inliers counted once per keypoint location on each side: SIFT gives one location several
    orientations, and many keypoints of one image can match one keypoint of a texture-poor image, so
    raw inliers can outnumber the locations that agree (a degenerate fit). Returns the smaller number of
    distinct locations (to 0.1 px) among ``src`` and ``dst``, each ``(n, 2)``."""
    if not len(src):
        return 0
    return min(len(np.unique(np.round(points, 1), axis=0)) for points in (src, dst))


def _usable_transform(transform) -> bool:
    """A RANSAC result worth looking at: a finite 2 x 3 matrix whose linear part keeps its scale
    between 1e-4 and 1e4 (OpenCV can return NaN, or a collapse onto one point, for degenerate input)."""
    if transform is None or np.shape(transform) != (2, 3) or not np.isfinite(transform).all():
        return False
    stretch = np.linalg.svd(transform[:, :2], compute_uv=False)
    return bool(1e-4 < stretch[1] <= stretch[0] < 1e4)


def fit(src: np.ndarray, dst: np.ndarray, threshold: float) -> tuple[np.ndarray | None, np.ndarray, int]:
    """The transform of ``src`` onto ``dst`` (each ``(n, 2)``) that most matches agree on, within
    ``threshold`` pixels: a similarity (rotation, scale, shift), or an affine map when more agree on it
    (a copy resized to another aspect ratio, 640 x 480 to 300 x 300, is not a similarity) as long as it
    keeps orientation and stretches one axis at most :data:`MAX_STRETCH` times the other. Returns the
    2 x 3 transform (None without one), the inlier mask and the inliers' :func:`distinct_points`.

    Degenerate input (repeated or collinear points, NaN, huge coordinates) and whatever RANSAC returns
    for it (NaN, a collapse) give no transform, never an exception."""
    import cv2

    src = np.asarray(src, np.float32).reshape(-1, 2)
    dst = np.asarray(dst, np.float32).reshape(-1, 2)
    best: tuple[np.ndarray | None, np.ndarray, int] = (None, np.zeros(len(src), bool), 0)
    finite = np.isfinite(src).all(axis=1) & np.isfinite(dst).all(axis=1)
    if finite.sum() < 3 or len(src) != len(dst):
        return best
    for estimate in (cv2.estimateAffinePartial2D, cv2.estimateAffine2D):
        try:
            transform, inliers = estimate(src[finite], dst[finite], method=cv2.RANSAC,
                                          ransacReprojThreshold=threshold)
        except cv2.error:
            continue
        if not _usable_transform(transform) or inliers is None:
            continue
        stretch = np.linalg.svd(transform[:, :2], compute_uv=False)
        if np.linalg.det(transform[:, :2]) <= 0 or stretch[0] > MAX_STRETCH * stretch[1]:
            continue  # a mirror, a collapse onto a line, or a shear no copy has
        keep = np.zeros(len(src), bool)
        keep[np.flatnonzero(finite)] = inliers.ravel().astype(bool)
        n = distinct_points(src[keep], dst[keep])
        if n > best[2]:
            best = (transform, keep, n)
    return best


def match(a: Features, b: Features, *, ratio: float = 0.75, threshold: float = 5.0, enough: int = 20) -> Match:
    """Verify one pair: ``a`` against ``b``, then against ``b``'s mirror unless ``enough`` inliers agree."""
    import cv2

    best = Match(0, 0, False, None, np.zeros((0, 4), np.float32))
    if not (a.usable and b.usable) or len(a.points) < 2:
        return best
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    query = a.descriptors.astype(np.float32)  # OpenCV's L2 matcher is ~7x slower on uint8 (same distances)
    for mirrored in (False, True):
        points = b.mirror_points if mirrored else b.points  # the mirror's, derived only when needed
        descriptors = (b.mirror_descriptors if mirrored else b.descriptors).astype(np.float32)
        if len(points) < 2:
            continue
        knn = matcher.knnMatch(query, descriptors, k=2)
        good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
        if len(good) >= 3:
            src = a.points[[g.queryIdx for g in good]]
            dst = points[[g.trainIdx for g in good]]
            transform, keep, n = fit(src, dst, threshold / b.scale)  # threshold: in b's pixels as detected
            if n > best.inliers:
                x_b = b.width - dst[keep, 0] if mirrored else dst[keep, 0]  # back to b's own pixels
                best = Match(n, len(good), mirrored, transform,
                             np.column_stack([src[keep], x_b, dst[keep, 1]]).astype(np.float32))
            elif not best.inliers and len(good) > best.matches:  # matches, but no transform they agree on
                best = Match(0, len(good), mirrored, None, best.pairs)
        if best.inliers >= enough:
            break
    return best
