"""Neighbour search: every pair of rows closer than a radius, and each row's k nearest distances.

One interface, :class:`Search`, over two back-ends:

- :mod:`neardup.search.exact`: blocked BLAS products, O(N^2 d) time, O(block x N) memory;
- :mod:`neardup.search.approximate`: a cell index for very large N (exact distances, pairs can
  only be missed; :func:`pair_recall` measures how often).

Both are cut into tasks (row blocks, cells) that run on threads here or on Dask workers
(:mod:`neardup.search.tasks`, :mod:`neardup.engine`), with the same bytes either way.
"""
from __future__ import annotations

import numpy as np

from neardup.params import SEARCHES
from neardup.search.approximate import ApproximateIndex
from neardup.search.exact import knn_distances, pair_recall, radius_search, unit_rows
from neardup.search.tasks import ThreadExecutor

__all__ = ["SEARCHES", "AUTO_APPROXIMATE_ABOVE", "Search", "knn_distances", "pair_recall", "radius_search",
           "unit_rows"]

#: ``search: auto`` switches to the approximate index above this many images.
AUTO_APPROXIMATE_ABOVE = 100_000


class Search:
    """Neighbour queries of the first ``n_ref`` rows (the real images) and of the extra rows (planted
    copies) against the real images, exact (blocked BLAS) or approximate (cell index).

    Parameters
    ----------
    points : ndarray, shape (n, d)
        ``n_ref`` real rows first, then the extra rows.
    n_ref : int
    mode : {'exact', 'approximate', 'auto'}
        ``auto``: approximate above :data:`AUTO_APPROXIMATE_ABOVE` real rows.
    nprobe : int
        Cells visited per query (approximate).
    block : int
        Rows per matrix product (exact).
    metric : {'cosine', 'euclidean'}
        The approximate search is cosine only.
    executor : ThreadExecutor or DaskExecutor (neardup.search.tasks), optional
        Where the blocks or cells run (:mod:`neardup.search.tasks`); default threads of this process.
    """

    def __init__(self, points, *, n_ref: int, mode: str, nprobe: int, block: int, metric: str = "cosine",
                 executor=None):
        # cosine: unit rows once here (no copy if they already are), shared by every search below
        points = unit_rows(points) if metric == "cosine" else np.asarray(points, dtype=np.float32)
        self.points, self.n_ref, self.block, self.metric = points, n_ref, block, metric
        self.executor = executor or ThreadExecutor()
        if mode == "auto":
            mode = "approximate" if n_ref > AUTO_APPROXIMATE_ABOVE else "exact"
        self.mode = mode
        self.index = (ApproximateIndex(self.points[:n_ref], nprobe=nprobe, executor=self.executor)
                      if mode == "approximate" else None)

    def knn(self, k: int) -> np.ndarray:
        """Distances of every row to its ``k`` nearest real rows, shape (n, k), ascending."""
        real, extra = self.points[:self.n_ref], self.points[self.n_ref:]
        if self.index is not None:
            parts = [self.index.knn_distances(real, k), self.index.knn_distances(extra, k, self_offset=False)]
        else:
            options = {"metric": self.metric, "block": self.block, "executor": self.executor}
            parts = [knn_distances(real, k, **options), knn_distances(extra, k, reference=real, **options)]
        return np.vstack(parts)

    def radius(self, radii: np.ndarray, metric: str):
        """Pairs ``(rows, cols, distances)`` with ``distance <= radii[row]``; extra rows only against real ones."""
        if self.index is None:
            return radius_search(self.points, radii, metric=metric, block=self.block, executor=self.executor)
        n = self.n_ref
        r1, c1, d1 = self.index.radius_search(self.points[:n], radii[:n])
        r2, c2, d2 = self.index.radius_search(self.points[n:], radii[n:], self_offset=False)
        return np.concatenate([r1, r2 + n]), np.concatenate([c1, c2]), np.concatenate([d1, d2])


