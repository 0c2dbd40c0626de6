"""Exact neighbour search by blocked matrix products: memory bounded by the block, never N x N.

Both searches compare every row with every other (BLAS matrix products, one block of rows at a
time), so the cost is O(N^2 d) time but only O(block * N) memory per task for the similarities in
flight, plus what is returned. A search of a set against itself computes each pair once (the upper
triangle: a block of rows against itself and the rows after it), half the products of a full pass.
Each block is a task (:mod:`neardup.search.tasks`: threads here, one per core, or Dask workers),
merged in block order, with the same bytes either way.
"""
from __future__ import annotations

import numpy as np

from neardup.engine import tqdm
from neardup.search.tasks import ThreadExecutor

#: Rows compared at once; a block of similarities takes ``block * N * 4`` bytes.
DEFAULT_BLOCK = 1024
#: ... but at most this many similarities a block (32 MB of float32), so that a task's memory stays
#: bounded as N grows: 1,024 rows up to 8,192 images, 335 at 25,000 (docs/performance.md).
MAX_BLOCK_ELEMENTS = 1 << 23


def _distances(queries, ref, sq_queries, sq_ref, metric: str) -> np.ndarray:
    """Distances of a block of query rows to reference rows, shape (b, m), float32."""
    dots = queries @ ref.T
    if metric == "cosine":
        np.subtract(1.0, dots, out=dots)
        return np.maximum(dots, 0.0, out=dots)
    dots *= -2.0
    dots += sq_queries[:, None]
    dots += sq_ref[None, :]
    return np.sqrt(np.maximum(dots, 0.0, out=dots), out=dots)


def unit_rows(points: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32 C-contiguous; no copy when they already are (zero rows stay)."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", points, points, dtype=np.float64))
    if np.all((np.abs(norms - 1.0) < 1e-5) | (norms == 0)):
        return points
    return points / np.where(norms > 0, norms, 1.0).astype(np.float32)[:, None]


def _prepare(points: np.ndarray, metric: str) -> np.ndarray:
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    return unit_rows(points) if metric == "cosine" else np.ascontiguousarray(points, dtype=np.float32)


def _block_distances(queries, ref, metric: str) -> np.ndarray:
    """:func:`_distances` of two slices (squared norms of the slices themselves)."""
    if metric == "cosine":
        return _distances(queries, ref, None, None, metric)
    return _distances(queries, ref, np.einsum("ij,ij->i", queries, queries), np.einsum("ij,ij->i", ref, ref),
                      metric)


def _upper_block(points, start: int, stop: int, metric: str) -> np.ndarray:
    """Rows ``start:stop`` against rows ``start:``, shape (b, n - start), each pair once: a row's
    distance to itself and to earlier rows is ``inf``."""
    dist = _block_distances(points[start:stop], points[start:], metric)
    b = stop - start
    dist[:, :b][np.tril_indices(b)] = np.inf
    return dist


def _tasks(n: int, block: int, width: int | None = None) -> list[tuple[int, int]]:
    """Row ranges of ``block`` rows (fewer when a block against ``width`` columns, default ``n``, would
    exceed :data:`MAX_BLOCK_ELEMENTS`)."""
    block = max(1, min(int(block), max(16, MAX_BLOCK_ELEMENTS // max(1, width if width is not None else n))))
    return [(start, min(n, start + block)) for start in range(0, n, block)]


def progress(results, total: int, desc: str):
    """``results`` with a progress bar when there are many."""
    return tqdm(results, total=total, desc=desc, unit="block", leave=False, disable=total < 8)


def _radius_task(arrays: dict, start: int, stop: int, metric: str, uniform: bool):
    """The pairs of rows ``start:stop`` with later rows within either row's radius (a task)."""
    dist = _upper_block(arrays["points"], start, stop, metric)
    radii = arrays["radii"]
    r, c = np.nonzero(dist <= radii[start:stop, None])  # pairs found from the earlier row
    forward = (r + start, c + start, dist[r, c].astype(np.float64))
    if not uniform:  # ... and from the later row, with its own radius
        r, c = np.nonzero(dist <= radii[None, start:])
    backward = forward if uniform else (r + start, c + start, dist[r, c].astype(np.float64))
    rows, cols, dists = [forward[0], backward[1]], [forward[1], backward[0]], [forward[2], backward[2]]
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64), np.concatenate(dists)


def radius_search(points: np.ndarray, radius, *, metric: str = "cosine", block: int = DEFAULT_BLOCK, executor=None):
    """All ordered pairs ``(i, j)``, ``i != j``, with ``distance(i, j) <= radius[i]``.

    Parameters
    ----------
    points : ndarray, shape (n, d)
        ``cosine``: any non-zero rows (normalised here); ``euclidean``: raw vectors.
    radius : float or ndarray of shape (n,)
        Search radius per query row, in ``metric`` units (cosine distance is ``1 - cos``).
    metric : {'cosine', 'euclidean'}
    block : int
        Query rows per matrix product (one task).
    executor : ThreadExecutor or DaskExecutor (neardup.search.tasks), optional
        Where the blocks run (:mod:`neardup.search.tasks`); default threads of this process.

    Returns
    -------
    rows, cols : ndarray of int64, shape (m,)
    distances : ndarray of float64, shape (m,)
    """
    points = _prepare(points, metric)
    n = len(points)
    radii = np.ascontiguousarray(np.broadcast_to(np.asarray(radius, dtype=np.float64), (n,)))
    uniform = bool(n) and bool(np.all(radii == radii[0]))
    tasks = [(start, stop, metric, uniform) for start, stop in _tasks(n, block)]
    found = list(progress((executor or ThreadExecutor()).map(_radius_task, {"points": points, "radii": radii}, tasks),
                           len(tasks), "radius search"))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return tuple(np.concatenate(part) for part in zip(*found))


def smallest(values: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` smallest of each row, unsorted, shape (n, k); needs ``values.shape[1] >= k``."""
    return values if values.shape[1] == k else np.partition(values, k - 1, axis=1)[:, :k]


def _knn_task(arrays: dict, start: int, stop: int, k: int, metric: str):
    """Rows ``start:stop`` against every later row (a task): their own ``k`` smallest, shape (b, k'),
    and each later row's ``k`` smallest among the block's rows, shape (n - start, k'')."""
    dist = _upper_block(arrays["points"], start, stop, metric)
    own = smallest(dist, min(k, dist.shape[1]))
    later = np.ascontiguousarray(dist.T)  # (n - start, b): the block's rows as candidates of each later row
    return own, smallest(later, min(k, later.shape[1])).copy()


def _knn_reference_task(arrays: dict, start: int, stop: int, k: int, metric: str) -> np.ndarray:
    """The ``k`` smallest distances of rows ``start:stop`` to the reference rows (a task)."""
    return smallest(_block_distances(arrays["points"][start:stop], arrays["reference"], metric), k).copy()


def knn_distances(points: np.ndarray, k: int, *, reference: np.ndarray | None = None, metric: str = "cosine",
                  block: int = DEFAULT_BLOCK, executor=None) -> np.ndarray:
    """Distances from each row to its ``k`` nearest rows of ``reference``, ascending.

    Parameters
    ----------
    points : ndarray, shape (n, d)
    k : int
    reference : ndarray, shape (m, d), optional
        Default: ``points`` itself, each row's own distance left out.
    metric, block, executor
        As for :func:`radius_search`.

    Returns
    -------
    ndarray of float64, shape (n, k); ``inf`` where fewer than ``k`` candidates exist.
    """
    points = _prepare(points, metric)
    n = len(points)
    out = np.full((n, k), np.inf)
    if k <= 0 or n == 0:
        return out
    executor = executor or ThreadExecutor()
    tasks = _tasks(n, block, None if reference is None else len(reference))
    if reference is not None:
        ref = _prepare(reference, metric)
        kk = min(k, len(ref))
        found = executor.map(_knn_reference_task, {"points": points, "reference": ref},
                           [(start, stop, kk, metric) for start, stop in tasks])
        for (start, stop), near in zip(tasks, progress(found, len(tasks), "neighbour search")):
            out[start:stop, :kk] = near
        return np.sort(out, axis=1)
    best = np.full((n, k), np.inf, dtype=np.float32)  # each row's k smallest so far, unsorted
    found = executor.map(_knn_task, {"points": points}, [(start, stop, k, metric) for start, stop in tasks])
    for (start, stop), (own, later) in zip(tasks, progress(found, len(tasks), "neighbour search")):
        # rows start:stop see every later row here and every earlier row already (as columns)
        best[start:stop] = smallest(np.hstack([best[start:stop], own]), k)
        best[start:] = smallest(np.hstack([best[start:], later]), k)
    return np.sort(best.astype(np.float64), axis=1)


def pair_recall(points: np.ndarray, found_rows, found_cols, thresholds, *, radius, score=None,
                sample: int = 500, seed: int = 0) -> dict[float, float]:
    """Share of the exact pairs of a seeded sample of query rows that were found, per threshold.

    Parameters
    ----------
    points : ndarray, shape (n, d)
        The vectors searched (cosine).
    found_rows, found_cols : ndarray of int, shape (m,)
        The pairs a search returned (either direction counts).
    thresholds : sequence of float
        A pair counts at threshold ``t`` when its score is at most ``t``.
    radius : float or ndarray of shape (n,)
        The search radius (per row) of the largest threshold: pairs with a cosine distance above
        both rows' radii are not candidates.
    score : callable, optional
        ``score(rows, cols, distances) -> scores`` (e.g. neighbourhood normalisation); default the
        cosine distance itself.

    Returns
    -------
    dict threshold -> recall, NaN where the sampled rows have no pair within it.
    """
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(len(points), size=min(sample, len(points)), replace=False))
    unit = unit_rows(points)
    radii = np.broadcast_to(np.asarray(radius, dtype=np.float32), (len(points),))
    top = max(thresholds)
    rows, cols, scores = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    for start in range(0, len(queries), 64):  # 64 x N similarities at a time
        q = queries[start:start + 64]
        dist = np.maximum(1.0 - unit[q] @ unit.T, 0.0)
        dist[np.arange(len(q)), q] = np.inf
        r, c = np.nonzero(dist <= np.maximum(radii[q][:, None], radii[None, :]))
        d = dist[r, c].astype(np.float64)
        value = d if score is None else score(q[r], c, d)
        keep = value <= top
        rows.append(q[r][keep])
        cols.append(c[keep])
        scores.append(value[keep])
    rows, cols, scores = np.concatenate(rows), np.concatenate(cols), np.concatenate(scores)
    found_rows, found_cols = np.asarray(found_rows), np.asarray(found_cols)
    mine = np.isin(found_rows, queries) | np.isin(found_cols, queries)  # pairs of the sampled rows only
    found_rows, found_cols = found_rows[mine].tolist(), found_cols[mine].tolist()
    found = set(zip(found_rows, found_cols)) | set(zip(found_cols, found_rows))
    hit = np.array([pair in found for pair in zip(rows.tolist(), cols.tolist())], bool)
    return {t: float(hit[scores <= t].mean()) if (scores <= t).any() else float("nan") for t in thresholds}
