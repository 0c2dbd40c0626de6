"""How a pair of images is scored: the descriptor each image gets and the distance between two.

Measured on real natural duplicates (see docs/quality.md), three things separate duplicates from
look-alikes far better than plain cosine on the pooled CNN features:

- **PCA whitening fitted on the dataset itself** (:func:`fit_whitening`): directions along which
  the whole dataset varies (class, scene, lighting) count less, rare details count more.
- **A hybrid with a perceptual hash** (:func:`hybrid_vectors`): the cosine of the concatenated
  unit vectors is ``(1 - w) * cos(cnn) + w * cos(hash)``, so pixel layout breaks ties between
  photos that merely look alike to the CNN.
- **Neighbourhood normalisation** (:func:`local_scale`, :func:`pair_graph`): a pair is judged
  against how crowded each image's neighbourhood is, so look-alike series stop being flagged.

Every score stays a distance on one sparse graph, so the eps sweep, DBSCAN and evaluation work
unchanged on top of it.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import sparse

from neardup.search import SEARCHES, Search, pair_recall
from neardup.search.exact import DEFAULT_BLOCK

log = logging.getLogger(__name__)


#: Rows whitened or mixed at once: float64 temporaries stay at ``ROW_BLOCK x d``, not ``N x d``.
ROW_BLOCK = 4096
#: A pair within the radius is kept when it is among one of its images' this-many nearest: the graph
#: holds at most 64 x N pairs, whatever the data. An eps at which an image has
#: more neighbours than that groups far beyond what the eps rule ever chooses (at most one pair per
#: image proposed); without the bound, a 64-bit hash at eps 0.8 (Hamming 25.6) kept 10^7 pairs of
#: 25,000 photos and the stage needed over 8 GB (docs/performance.md).
MAX_NEIGHBOURS = 64


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _row_blocks(n: int):
    return [slice(start, start + ROW_BLOCK) for start in range(0, n, ROW_BLOCK)]


def fit_whitening(vectors: np.ndarray, *, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    """Fit shrunk PCA whitening on L2-normalised vectors.

    Each principal direction with variance ``v`` is scaled by ``1 / sqrt(v + lambda)``, where
    ``lambda = shrinkage * total variance / min(n - 1, d)`` (the mean variance of the directions
    n images can span): near 0 whitens fully, large values approach plain cosine. Cost: one
    (d, d) covariance, no N x N.

    Parameters
    ----------
    vectors : ndarray, shape (n, d)
    shrinkage : float > 0

    Returns
    -------
    mean : ndarray, shape (d,)
    projection : ndarray, shape (d, d)
    """
    if shrinkage <= 0:
        raise ValueError(f"shrinkage must be > 0, got {shrinkage}")
    vectors = np.asarray(vectors)
    n, d = vectors.shape
    mean = sum((_unit(vectors[rows]).sum(axis=0) for rows in _row_blocks(n)), np.zeros(d)) / max(n, 1)
    cov = np.zeros((d, d))
    for rows in _row_blocks(n):
        centred = _unit(vectors[rows]) - mean
        cov += centred.T @ centred
    variances, directions = np.linalg.eigh(cov / max(n, 1))
    variances = np.maximum(variances, 0.0)
    # mean over the directions the images can span (at most n - 1): with fewer images than
    # dimensions the empty directions must not make lambda tiny and blow up noise
    rank = max(1, min(n - 1, d))
    lam = shrinkage * variances.sum() / rank if variances.sum() > 0 else 1.0
    return mean, directions / np.sqrt(variances + lam)


def apply_whitening(vectors: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Whitened vectors, shape (n, d) -> (n, d) float32 (not normalised)."""
    vectors = np.asarray(vectors)
    out = np.empty((len(vectors), projection.shape[1]), np.float32)
    for rows in _row_blocks(len(vectors)):
        out[rows] = (_unit(vectors[rows]) - mean) @ projection
    return out


def hybrid_vectors(cnn: np.ndarray, hashes: np.ndarray, *, hash_weight: float) -> np.ndarray:
    """Concatenate unit CNN vectors and unit hash vectors, weighted so cosines mix linearly.

    ``cos(hybrid_a, hybrid_b) = (1 - w) * cos(cnn_a, cnn_b) + w * cos(hash_a, hash_b)``; for ±1
    hash vectors ``cos(hash) = 1 - 2 * Hamming / bits``.

    Parameters
    ----------
    cnn : ndarray, shape (n, d)
    hashes : ndarray, shape (n, b); a zero row (no hash) leaves that image on its CNN vector.
    hash_weight : float in [0, 1)

    Returns
    -------
    ndarray, shape (n, d + b), float32, unit rows.
    """
    if not 0 <= hash_weight < 1:
        raise ValueError(f"hash_weight must lie in [0, 1), got {hash_weight}")
    if len(cnn) != len(hashes):
        raise ValueError(f"{len(cnn)} CNN vectors but {len(hashes)} hash vectors")
    cnn, hashes = np.asarray(cnn), np.asarray(hashes)
    out = np.empty((len(cnn), cnn.shape[1] + hashes.shape[1]), np.float32)
    for rows in _row_blocks(len(cnn)):
        out[rows] = _unit(np.hstack([np.sqrt(1.0 - hash_weight) * _unit(cnn[rows]),
                                     np.sqrt(hash_weight) * _unit(hashes[rows])]))
    return out


def _scale_of(near: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k-th .. (2k-1)-th nearest distances per row (NaN rows: the median of the others)."""
    scale = near[:, k - 1:2 * k - 1]
    scale = np.where(np.isfinite(scale), scale, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without any neighbour: NaN, filled below
        out = np.nanmean(scale, axis=1) if scale.size else np.zeros(len(near))
    return np.nan_to_num(out, nan=float(np.nanmedian(out)) if np.isfinite(out).any() else 0.0)


def local_scale(points: np.ndarray, *, k: int, n_reference: int | None = None, search=None) -> np.ndarray:
    """Each image's neighbourhood scale: mean cosine distance to its k-th .. (2k-1)-th neighbour.

    Neighbours are looked for among the first ``n_reference`` rows only (default: all), so
    extra rows such as planted copies never change the real images' scale.

    Returns
    -------
    ndarray, shape (n,)
    """
    points = np.asarray(points, dtype=np.float32)
    n_ref = len(points) if n_reference is None else int(n_reference)
    search = search or Search(points, n_ref=n_ref, mode="exact", nprobe=0, block=1024)
    return _scale_of(search.knn(2 * k - 1), k)


def pair_graph(points: np.ndarray, *, radius: float, search: str = "exact", nprobe: int = 16,
               block: int = DEFAULT_BLOCK, **options) -> sparse.csr_matrix:
    """The graph of :func:`scored_graph` without the nearest-neighbour candidates (same options), by
    default from the exact search, and from 16 cells of an approximate one (what ``scored_graph``
    defaulted to before its options became required): for tests and benchmarks that compare graphs,
    not for the pipeline, which passes the ``cluster`` params."""
    return scored_graph(points, radius=radius, candidates=0, search=search, nprobe=nprobe, block=block,
                        **options)[0]


def scored_graph(points: np.ndarray, *, radius: float, candidates: int, metric: str = "cosine",
                 normalize_k: int = 0, n_reference: int | None = None, search: str, nprobe: int, block: int,
                 stats: dict | None = None, recall_at=None, executor=None,
                 max_neighbours: int = MAX_NEIGHBOURS):
    """Sparse symmetric graph of every pair whose (normalised) distance is at most ``radius`` (among
    each image's ``max_neighbours`` nearest, :data:`MAX_NEIGHBOURS`; 0: no bound), plus each real
    image's ``candidates`` nearest neighbours whatever their distance.

    With ``normalize_k`` > 0 the distance is ``d(a, b) + median(s) - (s_a + s_b) / 2`` (clipped at
    0), ``s`` from :func:`local_scale`: pairs in crowded neighbourhoods move apart, pairs in
    sparse ones move closer, on the same scale as plain cosine distance.

    The nearest-neighbour candidates (by plain distance, ties included, among the first
    ``n_reference`` rows) are a set of pairs that depends on the images only, not on ``radius``:
    scores over them (average precision) compare across runs with different eps sweeps.

    ``search``: ``exact`` (blocked products, ``block`` rows at a time), ``approximate`` (the cell
    index of :mod:`neardup.search.approximate`, ``nprobe`` cells per query, exact distances; cosine only;
    rows past ``n_reference`` are matched against the first ``n_reference`` only) or ``auto``
    (approximate above :data:`AUTO_APPROXIMATE_ABOVE` images). ``executor``: where its blocks or cells
    run (:mod:`neardup.search.tasks`: threads here, the default, or :class:`neardup.search.tasks.DaskExecutor`).
    ``stats``, if given, receives ``search`` (the mode used), ``n_edges`` (stored entries of the
    graph: both directions of every pair) and, for the approximate
    search, ``search_recall``: the share of the pairs an exact search would give (same scales)
    that were found, on a sample of 500 query rows, and ``search_recall_by_eps`` the same for each
    threshold of ``recall_at`` (e.g. the eps sweep) up to ``radius``.

    Returns
    -------
    graph : csr_matrix, shape (n, n), float64; zero distances stored explicitly, no self-loops.
    nearest : csr_matrix, shape (n, n), bool, the same entries as ``graph``: True where the pair is
        among the ``candidates`` nearest of one of its images.
    """
    n = len(points)
    if n == 0:
        return sparse.csr_matrix((0, 0)), sparse.csr_matrix((0, 0), dtype=bool)
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
    if (normalize_k or search == "approximate") and metric != "cosine":
        raise ValueError("neighbourhood normalisation and the approximate search need metric 'cosine'")
    n_ref = n if n_reference is None else int(n_reference)
    searcher = Search(points, n_ref=n_ref, mode=search if metric == "cosine" else "exact", nprobe=nprobe,
                      block=block, metric=metric, executor=executor)
    depth = max(2 * normalize_k - 1 if normalize_k else 0, candidates, max_neighbours)
    near = searcher.knn(depth) if depth else np.zeros((n, 0))
    ball = np.zeros(n)  # each real row's distance to its candidates-th nearest real row (ties included)
    if candidates:
        # the candidates-th distance, or the farthest found when fewer exist (a tiny dataset: all pairs)
        found = np.where(np.isfinite(near[:n_ref, :candidates]), near[:n_ref, :candidates], -np.inf)
        ball[:n_ref] = np.maximum(found.max(axis=1), 0.0) + 1e-6  # + float32 round-off between searches
    score = None
    if normalize_k:
        scale = _scale_of(near, normalize_k)
        centre = float(np.median(scale[:n_ref]))

        def score(a, b, d):
            return np.maximum(d + centre - (scale[a] + scale[b]) / 2.0, 0.0)

        # a qualifying pair is found from the endpoint with the larger scale
        radii = radius - centre + scale
    else:
        radii = np.full(n, float(radius))
    if max_neighbours:  # no farther than the max_neighbours-th nearest (raw distance; inf where fewer exist)
        bound = near[:, max_neighbours - 1]
        radii = np.minimum(radii, np.where(np.isfinite(bound), bound + 1e-6, np.inf))
    rows, cols, raw = searcher.radius(np.maximum(radii, ball), metric)
    dist = raw if score is None else score(rows, cols, raw)
    is_near = raw <= ball[rows]
    keep = (dist <= radius) | is_near
    rows, cols, dist, is_near = rows[keep], cols[keep], dist[keep], is_near[keep]
    if stats is not None:
        stats["search"] = searcher.mode
        if searcher.mode == "approximate":
            within = (dist <= radius) & (rows < n_ref) & (cols < n_ref)
            levels = [float(t) for t in (() if recall_at is None else recall_at) if t <= radius]
            levels = sorted({float(radius), *levels})
            recall = pair_recall(searcher.points[:n_ref], rows[within], cols[within], levels, radius=radii[:n_ref],
                                 score=score)
            recall = {t: (None if np.isnan(r) else round(r, 4)) for t, r in recall.items()}  # None: no pair
            stats["search_recall"] = recall[float(radius)]
            stats["search_recall_by_eps"] = {f"{t:g}": r for t, r in recall.items()}
    graph, nearest = symmetric_graph(rows, cols, dist, n, flags=is_near)
    if stats is not None:
        stats["n_edges"] = int(graph.nnz)  # both directions of every pair
    return graph, nearest


def symmetric_graph(rows, cols, dist, n: int, *, flags=None):
    """(n, n) csr graph with both directions of every edge at the smaller of their distances.

    float32 round-off can make d(a, b) != d(b, a) or find an edge from one side only at the
    boundary; the union with the smaller distance makes the graph exactly symmetric. With
    ``flags`` (bool per edge), also returns the (n, n) bool csr matrix, True where any direction
    of the edge was flagged.
    """
    rows, cols, dist = np.concatenate([rows, cols]), np.concatenate([cols, rows]), np.concatenate([dist, dist])
    order = np.lexsort((dist, cols, rows))
    rows, cols, dist = rows[order], cols[order], dist[order]
    first = np.ones(len(rows), bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    graph = sparse.csr_matrix((dist[first], (rows[first], cols[first])), shape=(n, n))
    if flags is None:
        return graph
    flags = np.concatenate([flags, flags])[order]
    any_flag = np.logical_or.reduceat(flags, np.flatnonzero(first)) if len(flags) else flags
    return graph, sparse.csr_matrix((any_flag, (rows[first], cols[first])), shape=(n, n), dtype=bool)


def descriptors(vectors: np.ndarray, *, whiten: float = 0.0, hashes: np.ndarray | None = None,
                hash_weight: float = 0.0, fit_rows: int | None = None) -> np.ndarray:
    """The vectors pairs are scored on: whitened CNN features, optionally mixed with a hash.

    Parameters
    ----------
    vectors : ndarray, shape (n, d)
        Pooled CNN features.
    whiten : float
        Shrinkage of :func:`fit_whitening` (0: no whitening).
    hashes : ndarray, shape (n, b), optional
        ±1 hash vectors aligned with ``vectors`` (see :meth:`neardup.embed.Embeddings.rows_for`).
    hash_weight : float
        Weight of the hash in :func:`hybrid_vectors` (0: CNN only).
    fit_rows : int, optional
        Fit the whitening on the first ``fit_rows`` rows only (the real images, not planted copies).

    Returns
    -------
    ndarray, shape (n, d) or (n, d + b), float32
    """
    out = np.asarray(vectors, dtype=np.float32)
    if whiten:
        mean, projection = fit_whitening(out[:fit_rows], shrinkage=whiten)
        out = apply_whitening(out, mean, projection)
    if hash_weight:
        if hashes is None:
            raise ValueError("hash_weight > 0 needs hash vectors")
        out = hybrid_vectors(out, hashes, hash_weight=hash_weight)
    return out
