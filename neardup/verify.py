"""Geometric verification of candidate pairs: shared local features that agree on one similarity
transform (rotation, scale, shift; mirrored too) are proof of a copy.

For each image, SIFT keypoints (OpenCV) on the grey image scaled to at most ``max_side`` pixels,
of the image and of its mirror, cached by image content. A pair is matched with Lowe's ratio test,
then a similarity is fitted with RANSAC (``cv2.estimateAffinePartial2D``); the inliers, counted once
per keypoint location, are the evidence. A pair with at least ``min_inliers`` of them, making up at
least ``min_ratio`` of the matches (a repeated pattern gives a few inliers among many matches that
disagree), is proven and moves closer (its distance times ``factor``). A pair that is not proven
although both images have ``refute_keypoints`` keypoints moves away (its distance over ``factor``);
other pairs keep their distance (a low-texture copy has few features, so there no agreement is no
proof of a different photo: measured in docs/quality.md). Images whose short side is under
``min_side`` are not verified (too few features: CIFAR's 32 x 32).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from neardup.cache import CACHE_VERSION, descriptor_key
from neardup.decode import open_rgb
from neardup.runner import cpu_cores

log = logging.getLogger(__name__)
#: SIFT's contrastThreshold, an eighth of OpenCV's 0.04: low-texture photos (fur, sky, a smooth
#: crop) keep enough keypoints to be proven, while textured ones keep their ``max_keypoints``
#: strongest (docs/quality.md, "Geometric verification": 0.04, 0.01, 0.005 and 0.0025 measured).
CONTRAST = 0.005
#: An affine fit may scale one axis at most this many times the other (aspect ratio changes).
MAX_STRETCH = 3.0
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
