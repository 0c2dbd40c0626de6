"""Geometric verification of candidate pairs: shared local features that agree on one similarity
transform (rotation, scale, shift; mirrored too) are proof of a copy.

Each image's SIFT keypoints and its mirror's come from :mod:`neardup.keypoints` (cached by content).
A pair is matched with Lowe's ratio test, then a similarity is fitted with RANSAC
(``cv2.estimateAffinePartial2D``), or an affine map when more matches agree on it (:func:`fit`); the
inliers, counted once per keypoint location, are the evidence. A pair with at least ``min_inliers`` of them, making up at
least ``min_ratio`` of the matches (a repeated pattern gives a few inliers among many matches that
disagree), is proven and moves closer (its distance times ``factor``). A pair that is not proven
although both images have ``refute_keypoints`` keypoints moves away (its distance over ``factor``);
other pairs keep their distance (a low-texture copy has few features, so there no agreement is no
proof of a different photo: measured in docs/quality.md). Images whose short side is under
``min_side`` are not verified (too few features: CIFAR's 32 x 32).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from neardup.keypoints import Features, load_features
from neardup.runner import cpu_cores

log = logging.getLogger(__name__)
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


def fit(src: np.ndarray, dst: np.ndarray, threshold: float) -> tuple[np.ndarray | None, np.ndarray, int]:
    """The transform of ``src`` onto ``dst`` (each ``(n, 2)``) that most matches agree on, within
    ``threshold`` pixels: a similarity (rotation, scale, shift), or an affine map when more agree on it
    (a copy resized to another aspect ratio, 640 x 480 to 300 x 300, is not a similarity) as long as it
    keeps orientation and stretches one axis at most :data:`MAX_STRETCH` times the other. Returns the
    2 x 3 transform (None without one), the inlier mask and the inliers' :func:`distinct_points`."""
    import cv2

    best: tuple[np.ndarray | None, np.ndarray, int] = (None, np.zeros(len(src), bool), 0)
    for estimate in (cv2.estimateAffinePartial2D, cv2.estimateAffine2D):
        transform, inliers = estimate(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold)
        if transform is None or inliers is None:
            continue
        stretch = np.linalg.svd(transform[:, :2], compute_uv=False)
        if np.linalg.det(transform[:, :2]) <= 0 or stretch[0] > MAX_STRETCH * stretch[1]:
            continue  # a mirror, a collapse onto a line, or a shear no copy has
        keep = inliers.ravel().astype(bool)
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
    for mirrored, points, descriptors in ((False, b.points, b.descriptors),
                                          (True, b.mirror_points, b.mirror_descriptors)):
        if len(points) < 2:
            continue
        knn = matcher.knnMatch(a.descriptors, descriptors, k=2)
        good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
        if len(good) >= 3:
            src = a.points[[g.queryIdx for g in good]]
            dst = points[[g.trainIdx for g in good]]
            transform, keep, n = fit(src, dst, threshold / b.scale)  # threshold: in b's pixels as detected
            if n > best.inliers:
                x_b = b.width - dst[keep, 0] if mirrored else dst[keep, 0]  # back to b's own pixels
                best = Match(n, len(good), mirrored, transform,
                             np.column_stack([src[keep], x_b, dst[keep, 1]]).astype(np.float32))
        if best.inliers >= enough:
            break
    return best


def pair_matches(pairs, manifest, params, *, cache_dir: str = "") -> dict:
    """``{(a, b): Match}`` for the id pairs ``pairs`` whose match is a proof (:meth:`Match.proves`), from the
    images of ``manifest`` (``id, path, sha256``, ``pixel_sha256``): the proof drawn in the report."""
    from neardup.contract import content_keys

    rows = manifest.drop_duplicates("id").set_index("id")
    ids = sorted({i for pair in pairs for i in pair if i in rows.index})
    if not ids:
        return {}
    index = {i: k for k, i in enumerate(ids)}
    chosen = rows.loc[ids]
    features, _ = load_features(range(len(ids)), chosen["path"].astype(str).to_numpy(), content_keys(chosen),
                                params, cache_dir=cache_dir)
    found = {}
    for a, b in pairs:
        if a in index and b in index:
            m = match(features[index[a]], features[index[b]])
            if m.proves(params):
                found[(a, b)] = m
    return found


def nearest_edges(coo: sparse.coo_matrix, graph: sparse.csr_matrix, n_reference: int | None = None) -> np.ndarray:
    """Mask over the entries of ``coo`` (the upper triangle of the symmetric ``graph``): the pair is
    some image's nearest neighbour among the first ``n_reference`` rows (the real images; default:
    all), other than its identical copies (distance 0; ties: the lower column). Planted copies
    (the rows after them) so never change which pairs of real images are verified."""
    n_reference = graph.shape[0] if n_reference is None else n_reference
    graph = graph.tocsr()[:, :n_reference].tocsr()
    graph.sort_indices()
    filled = np.flatnonzero(np.diff(graph.indptr))
    if not len(filled):
        return np.zeros(coo.nnz, bool)
    data = np.where(graph.data > 0, graph.data, np.inf)  # an identical copy is no neighbour to verify
    lowest = np.minimum.reduceat(data, graph.indptr[filled])
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    is_min = (data == np.repeat(lowest, np.diff(graph.indptr)[filled])) & np.isfinite(data)
    first = np.unique(rows[is_min], return_index=True)[1]
    a, b = rows[is_min][first], graph.indices[is_min][first]
    keys = np.minimum(a, b).astype(np.int64) * graph.shape[0] + np.maximum(a, b)
    return np.isin(coo.row.astype(np.int64) * graph.shape[0] + coo.col, keys)


def verify_edges(graph: sparse.csr_matrix, paths, content, params, *, radius: float, cache_dir: str = "",
                 n_reference: int | None = None,
                 stats: dict | None = None) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """``graph`` with its candidate pairs verified: proven pairs move closer, refuted ones away.

    Verified: every pair within ``radius`` (the largest eps) and each image's nearest neighbour among
    the first ``n_reference`` rows (the real images, so planted copies change nothing about them)
    whatever its distance (a crop can sit beyond every eps, and the proof brings it in), except pairs
    of identical content (distance 0). A pair that :meth:`Match.proves` a copy moves to its distance
    times ``factor``; a pair that does not, of two images with at least ``refute_keypoints`` keypoints
    each (both textured enough that a copy would show), moves to its distance divided by ``factor``.

    Parameters
    ----------
    graph : csr_matrix, shape (n, n)
        The scored pair graph (symmetric).
    paths : sequence of str, length n
        Each row's image file.
    content : sequence of str, length n
        Each row's content key (features are cached and shared by it).
    params : VerifyParams
        ``max_side``, ``max_keypoints``, ``min_side``, ``min_inliers``, ``min_ratio``, ``factor``,
        ``refute_keypoints``.
    n_reference : int, optional
        The real images are the first ``n_reference`` rows, planted copies the rest (default: all
        real): nearest neighbours are looked for among the real images only.
    stats : dict, optional
        Receives ``verify``: pairs verified, images they involve, pairs moved closer and away, images
        too small (timings go to the log only: outputs hold no timings).

    Returns
    -------
    graph : csr_matrix, shape (n, n)
        The graph with the moved distances.
    verdicts : csr_matrix of int8, shape (n, n), symmetric
        1 where a pair was proven, -1 where it was refuted (no entry: neither, or not verified).
    """
    coo = sparse.triu(graph, k=1).tocoo()
    chosen = np.flatnonzero(((coo.data <= radius) | nearest_edges(coo, graph, n_reference)) & (coo.data > 0))
    rows, cols = coo.row[chosen], coo.col[chosen]
    images = sorted(set(rows.tolist()) | set(cols.tolist()))
    start = time.perf_counter()
    features, todo = load_features(images, paths, content, params, cache_dir=cache_dir)
    t_images = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(cpu_cores()) as pool:  # OpenCV releases the GIL
        found = list(pool.map(lambda ab: match(features[ab[0]], features[ab[1]]), zip(rows, cols)))
    t_pairs = time.perf_counter() - start
    proven = np.array([m.proves(params) for m in found], dtype=bool)
    keypoints = np.array([min(len(features[a].points), len(features[b].points)) for a, b in zip(rows, cols)], dtype=int)
    refuted = ~proven & (params.refute_keypoints > 0) & (keypoints >= params.refute_keypoints)
    data = coo.data.astype(float).copy()
    data[chosen[proven]] *= params.factor
    data[chosen[refuted]] /= params.factor
    small = sum(1 for i in images if not features[i].usable)
    log.info("verified %d pairs (within %g, or an image's nearest): %d proven, moved closer; %d refuted, moved "
             "away; features of %d images (%d extracted, %.1f s), %.1f ms per pair", len(rows), radius,
             int(proven.sum()), int(refuted.sum()), len(images), len(todo), t_images,
             1000 * t_pairs / max(1, len(rows)))
    if small:
        log.info("%d of these images have a side under cluster.verify.min_side (%d px): their pairs are not verified",
                 small, params.min_side)
    if stats is not None:
        stats["verify"] = {"pairs": int(len(rows)), "images": len(images), "verified": int(proven.sum()),
                           "refuted": int(refuted.sum()), "too_small": small}
    moved = sparse.coo_matrix((np.r_[data, data], (np.r_[coo.row, coo.col], np.r_[coo.col, coo.row])),
                              shape=graph.shape).tocsr()
    verdict = proven.astype(np.int8) - refuted.astype(np.int8)
    keep = verdict != 0
    r, c, v = rows[keep], cols[keep], verdict[keep]
    verdicts = sparse.coo_matrix((np.r_[v, v], (np.r_[r, c], np.r_[c, r])), shape=graph.shape, dtype=np.int8).tocsr()
    return moved, verdicts
