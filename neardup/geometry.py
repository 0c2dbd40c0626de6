"""The geometry of one pair: do two images' local features agree on one transform?

Lowe's ratio test matches the keypoints of ``a`` with those of ``b`` (and of ``b``'s mirror), then a
similarity is fitted with RANSAC (``cv2.estimateAffinePartial2D``), or an affine map when more matches
agree on it (:func:`fit`); the inliers, counted once per keypoint location, are the evidence
(:class:`Match`, :meth:`Match.proves`). Degenerate input and whatever RANSAC returns for it never
raise: a non-finite or collapsed transform is no transform. Agreeing keypoints are not yet a copy:
two different photos that share an overlay (a camera-trap bar, a watermark, a UI frame) or a sliver
of scenery agree on one transform there. :func:`agreement` then looks at the pixels: aligned by the
transform, do the two images agree across the part of the picture they share? :mod:`neardup.verify`
runs this over a pair graph.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from neardup.keypoints import Features, grey_image

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


#: The pixel check: both images in grey at this longest side, the shared part cut into a grid of
#: cells (:data:`AGREEMENT_GRID` in the frame it is computed in); a cell counts when the aligned
#: images' pixels correlate at :data:`CELL_AGREES` or more there, among the cells with texture
#: (a standard deviation of :data:`CELL_TEXTURE` grey levels in the frame's own image).
AGREEMENT_SIDE, AGREEMENT_GRID, CELL_AGREES, CELL_TEXTURE = 160, (8, 6), 0.5, 6.0
#: Cells of a frame's grid (of 48) the other image must cover for the frame to be judged: a copy
#: covers its own frame whole (a crop's too); a transform that maps only a corner of each image
#: onto the other shares no real part of the picture.
MIN_SHARED = 8


def _grey(path: str) -> tuple[np.ndarray, float, int]:
    """``(grey float32 at AGREEMENT_SIDE, its scale, full width)`` of ``path``."""
    grey, scale, (width, _) = grey_image(path, AGREEMENT_SIDE, enlarge=True)
    return grey.astype(np.float32), scale, width


def _cells(image: np.ndarray, other: np.ndarray, to_other: np.ndarray) -> tuple[int, float]:
    """``(cells inside the overlap, agreement)`` on ``image``'s grid, with ``other`` warped onto it by
    ``to_other`` (2 x 3: ``image``'s pixels to ``other``'s). Among the cells textured in either image,
    a cell agrees when the aligned pixels correlate (a change of brightness or contrast keeps that);
    the agreement is the agreeing cells' share, a disagreeing cell that is flat in one image weighing
    half (a caption added to a copy, or another photo's content over a flat one: half the evidence
    of two textured cells that differ). NaN when under 4 cells have texture."""
    import cv2

    size = (image.shape[1], image.shape[0])
    warped = cv2.warpAffine(other, to_other, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)  # no black edge blended into the border cells
    inside = cv2.warpAffine(np.ones_like(other), to_other, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    (gx, gy), (h, w) = AGREEMENT_GRID, image.shape
    valid, agreeing, against = 0, 0, 0.0
    for j, i in itertools.product(range(gy), range(gx)):
        box = np.s_[j * h // gy:(j + 1) * h // gy, i * w // gx:(i + 1) * w // gx]
        mask = inside[box] > 0
        if mask.mean() < 0.8:
            continue
        valid += 1
        a, b = image[box][mask], warped[box][mask]
        spread = (a.std(), b.std())
        if max(spread) < CELL_TEXTURE:
            continue
        if min(spread) >= CELL_TEXTURE / 2 and np.corrcoef(a, b)[0, 1] >= CELL_AGREES:
            agreeing += 1
        else:
            against += 1 if min(spread) >= CELL_TEXTURE else 0.5
    judged = agreeing + against
    return valid, (agreeing / judged if agreeing + 2 * against >= 4 else float("nan"))


def agreement(path_a: str, path_b: str, m: Match) -> float | None:
    """The share of the two images' shared part whose pixels agree once aligned by ``m``'s transform
    (0 to 1, :func:`_cells`): the textured cells of a grid where the aligned grey images correlate,
    computed in each image's frame where the other covers :data:`MIN_SHARED` cells or more (a
    crop's own frame, and its original's), the better of the two (a padded copy's own frame holds
    its pad). 0 without a transform or when neither frame is covered; None when under 4 shared
    cells have texture (a flat image: the pixels cannot tell, the keypoints decide). A copy agrees
    nearly everywhere (0.78 and more on every set measured, a caption over a dark photo the least);
    two photos that share an overlay agree only there (0.58 at most; docs/quality.md, "What a proof
    is")."""
    if m.transform is None:
        return 0.0
    a, scale_a, _ = _grey(path_a)
    b, scale_b, width_b = _grey(path_b)
    a_to_b = np.vstack([m.transform, [0, 0, 1]]).astype(np.float64)  # a's pixels to b's (or its mirror's)
    if m.mirrored:
        a_to_b = np.array([[-1, 0, width_b], [0, 1, 0], [0, 0, 1]], float) @ a_to_b
    thumbs = np.diag([scale_b, scale_b, 1]) @ a_to_b @ np.diag([1 / scale_a, 1 / scale_a, 1])
    try:
        frames = [_cells(a, b, thumbs[:2]), _cells(b, a, np.linalg.inv(thumbs)[:2])]
    except np.linalg.LinAlgError:
        return 0.0
    shared = [share for valid, share in frames if valid >= MIN_SHARED]
    if not shared:
        return 0.0
    judged = [share for share in shared if not np.isnan(share)]
    return max(judged) if judged else None
