"""Exact neighbour search by blocked matrix products: memory bounded by the block, never N x N.

Both searches compare every row with every other (BLAS matrix products, one block of rows at a
time), so the cost is O(N^2 d) time but only O(block * N) memory for the similarities in flight,
plus what is returned.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

#: Rows compared at once; a block of similarities takes ``block * N * 4`` bytes.
DEFAULT_BLOCK = 1024


def _blocks(n: int, block: int, desc: str):
    starts = range(0, n, max(1, int(block)))
    return tqdm(starts, desc=desc, unit="block", leave=False, disable=len(starts) < 8)


def _distances(queries, ref, sq_queries, sq_ref, metric: str, self_offset: int | None) -> np.ndarray:
    """Distances of a block of query rows to all reference rows, shape (b, m).

    ``self_offset``: the queries are reference rows ``self_offset:self_offset + b``, whose own
    distance is set to ``inf``.
    """
    dots = queries @ ref.T
    if metric == "cosine":
        dist = np.maximum(1.0 - dots, 0.0)
    else:
        dist = np.sqrt(np.maximum(sq_queries[:, None] + sq_ref[None, :] - 2.0 * dots, 0.0))
    if self_offset is not None:
        b = len(queries)
        dist[np.arange(b), np.arange(self_offset, self_offset + b)] = np.inf
    return dist


def _rows(values, start: int, stop: int):
    return None if values is None else values[start:stop]


def _prepare(points: np.ndarray, metric: str):
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    points = np.ascontiguousarray(points, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(points, axis=1, keepdims=True)
        return points / np.where(norms > 0, norms, 1.0), None
    return points, np.einsum("ij,ij->i", points, points)


def radius_search(points: np.ndarray, radius, *, metric: str = "cosine", block: int = DEFAULT_BLOCK):
    """All ordered pairs ``(i, j)``, ``i != j``, with ``distance(i, j) <= radius[i]``.

    Parameters
    ----------
    points : ndarray, shape (n, d)
        ``cosine``: any non-zero rows (normalised here); ``euclidean``: raw vectors.
    radius : float or ndarray of shape (n,)
        Search radius per query row, in ``metric`` units (cosine distance is ``1 - cos``).
    metric : {'cosine', 'euclidean'}
    block : int
        Query rows per matrix product.

    Returns
    -------
    rows, cols : ndarray of int64, shape (m,)
    distances : ndarray of float64, shape (m,)
    """
    points, sq_norms = _prepare(points, metric)
    n = len(points)
    radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (n,))
    rows, cols, dists = [], [], []
    for start in _blocks(n, block, "radius search"):
        stop = min(n, start + block)
        dist = _distances(points[start:stop], points, _rows(sq_norms, start, stop), sq_norms, metric, start)
        r, c = np.nonzero(dist <= radii[start:stop, None])
        rows.append(r + start)
        cols.append(c)
        dists.append(dist[r, c].astype(np.float64))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return (np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64),
            np.concatenate(dists))


def knn_distances(points: np.ndarray, k: int, *, reference: np.ndarray | None = None, metric: str = "cosine",
                  block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Distances from each row to its ``k`` nearest rows of ``reference``, ascending.

    Parameters
    ----------
    points : ndarray, shape (n, d)
    k : int
    reference : ndarray, shape (m, d), optional
        Default: ``points`` itself, each row's own distance left out.

    Returns
    -------
    ndarray of float64, shape (n, k); ``inf`` where fewer than ``k`` candidates exist.
    """
    points, sq_norms = _prepare(points, metric)
    ref, ref_sq = (points, sq_norms) if reference is None else _prepare(reference, metric)
    n = len(points)
    out = np.full((n, k), np.inf)
    kk = min(k, len(ref) - (reference is None))
    if kk <= 0:
        return out
    for start in _blocks(n, block, "neighbour search"):
        stop = min(n, start + block)
        dist = _distances(points[start:stop], ref, _rows(sq_norms, start, stop), ref_sq, metric,
                          start if reference is None else None)
        part = np.partition(dist, kk - 1, axis=1)[:, :kk]
        out[start:stop, :kk] = np.sort(part, axis=1)
    return out


class ApproximateIndex:
    """FAISS inverted-file index (``IndexIVFFlat``, inner product on unit vectors) for cosine search.

    For datasets too large for the exact O(N^2) search: the vectors are split into ``nlist`` cells by
    k-means (trained on a seeded sample) and a query looks only into its ``nprobe`` nearest cells, so
    a pair can be missed; :func:`pair_recall` measures how many against the exact search.

    Parameters
    ----------
    reference : ndarray, shape (m, d)
        The vectors searched (normalised here).
    nprobe : int
        Cells visited per query: more is slower and finds more.
    seed : int
        Seed of the training sample and of k-means.
    """

    def __init__(self, reference: np.ndarray, *, nprobe: int = 16, seed: int = 0):
        import faiss

        ref, _ = _prepare(reference, "cosine")
        n, d = ref.shape
        nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))
        quantizer = faiss.IndexFlatIP(d)
        self.index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        rng = np.random.default_rng(seed)
        sample = ref[np.sort(rng.choice(n, size=min(n, 64 * nlist), replace=False))]
        self.index.train(sample)
        self.index.add(ref)
        self.index.nprobe = min(nprobe, nlist)
        self.n = n

    def radius_search(self, points: np.ndarray, radius, *, self_offset: bool = True,
                      block: int = 8 * DEFAULT_BLOCK):
        """Like :func:`radius_search` (cosine), over the indexed vectors; ``self_offset``: the query
        rows are the indexed rows themselves, whose own match is dropped."""
        points, _ = _prepare(points, "cosine")
        radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(points),))
        if not len(points):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        threshold = float(1.0 - radii.max() - 1e-6)
        rows, cols, dists = [], [], []
        for start in _blocks(len(points), block, "approximate radius search"):
            stop = min(len(points), start + block)
            lims, sims, ids = self.index.range_search(points[start:stop], threshold)
            lims = lims.astype(np.int64)
            r = np.repeat(np.arange(start, stop), np.diff(lims))
            dist = np.maximum(1.0 - sims.astype(np.float64), 0.0)
            keep = (dist <= radii[r]) & ((ids != r) if self_offset else True)
            rows.append(r[keep])
            cols.append(ids[keep].astype(np.int64))
            dists.append(dist[keep])
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(rows).astype(np.int64), np.concatenate(cols), np.concatenate(dists)

    def knn_distances(self, points: np.ndarray, k: int, *, self_offset: bool = True) -> np.ndarray:
        """Like :func:`knn_distances` (cosine), over the indexed vectors; shape (n, k), ascending."""
        points, _ = _prepare(points, "cosine")
        if not len(points):
            return np.zeros((0, k))
        sims, ids = self.index.search(points, k + int(self_offset))
        dist = np.where(ids >= 0, np.maximum(1.0 - sims.astype(np.float64), 0.0), np.inf)
        if self_offset:
            own = ids == np.arange(len(points))[:, None]
            dist = np.where(own, np.inf, dist)
        return np.sort(dist, axis=1)[:, :k]


def pair_recall(points: np.ndarray, radius, found_rows, found_cols, *, sample: int = 500,
                seed: int = 0) -> float:
    """Share of the exact within-``radius`` pairs (cosine; ``radius`` a float or one per row) of a
    seeded sample of query rows that were found.

    Returns NaN when the sampled rows have no pair within ``radius``.
    """
    points = np.asarray(points, dtype=np.float32)
    radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(points),))
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(len(points), size=min(sample, len(points)), replace=False))
    unit, _ = _prepare(points, "cosine")
    exact = set()
    for start in range(0, len(queries), DEFAULT_BLOCK):
        q = queries[start:start + DEFAULT_BLOCK]
        dist = np.maximum(1.0 - unit[q] @ unit.T, 0.0)
        dist[np.arange(len(q)), q] = np.inf
        r, c = np.nonzero(dist <= radii[q][:, None])
        exact.update(zip(q[r].tolist(), c.tolist()))
    if not exact:
        return float("nan")
    chosen = np.isin(found_rows, queries)
    found = set(zip(np.asarray(found_rows)[chosen].tolist(), np.asarray(found_cols)[chosen].tolist()))
    return len(exact & found) / len(exact)
