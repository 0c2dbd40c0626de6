"""Approximate cosine neighbour search for datasets too large for the exact O(N^2) search.

An inverted-file index searched cell by cell:

1. the unit vectors are projected on their first principal directions (``reduced_dim``, fitted on
   a seeded sample) and split into ``nlist ~ 4 sqrt(N)`` cells by FAISS k-means in that small space;
2. each query visits its ``nprobe`` nearest cells (found in the small space too);
3. distances are then computed exactly, in full dimension, one cell at a time: the cell's members
   against every query visiting it, as one BLAS product.

Step 3 keeps a cell in cache while all its queries pass, so the search runs at matrix-product
speed (FAISS's own IVF scan goes query by query and is bound by memory bandwidth at 1280-d). Every
distance returned is exact; a pair is missed only when a query does not visit its partner's cell,
and :func:`neardup.search.exact.pair_recall` measures how often. The index keeps no copy of the
vectors, only ``N x reduced_dim`` floats and the cell lists.
"""
from __future__ import annotations

import numpy as np

from neardup.contract import UserError
from neardup.search.exact import blocks, smallest, unit_rows

#: Queries per matrix product within one cell.
QUERY_BLOCK = 8192


class ApproximateIndex:
    """Cells of the indexed unit vectors; see the module docstring.

    Parameters
    ----------
    reference : ndarray, shape (m, d)
        The vectors searched (normalised here; not copied when already unit float32 rows).
    nprobe : int
        Cells visited per query: more is slower and finds more.
    seed : int
        Seed of the training sample and of k-means.
    reduced_dim : int
        Dimensions the cells are formed and chosen in.
    """

    def __init__(self, reference: np.ndarray, *, nprobe: int = 16, seed: int = 0, reduced_dim: int = 64):
        try:
            import faiss
        except ModuleNotFoundError as exc:  # an optional dependency: the [scale] extra
            if exc.name != "faiss":
                raise
            raise UserError("the approximate search (cluster.search: approximate, or auto above "
                            "100,000 images) needs FAISS: pip install 'neardup[scale]' (faiss-cpu), "
                            "or set cluster.search: exact") from exc

        self.reference = unit_rows(reference)
        n, d = self.reference.shape
        self.nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))
        self.nprobe = int(max(1, min(nprobe, self.nlist)))
        rng = np.random.default_rng(seed)
        sample = self.reference[np.sort(rng.choice(n, size=min(n, 40 * self.nlist), replace=False))]
        self.mean = sample.mean(axis=0)
        centred = sample - self.mean
        _, directions = np.linalg.eigh((centred.T @ centred).astype(np.float64))
        self.projection = np.ascontiguousarray(directions[:, ::-1][:, :min(reduced_dim, d)], dtype=np.float32)
        kmeans = faiss.Kmeans(self.projection.shape[1], self.nlist, niter=10, seed=seed, verbose=False,
                              max_points_per_centroid=40)
        kmeans.train(self._reduce(sample))
        self.quantizer = faiss.IndexFlatL2(self.projection.shape[1])
        self.quantizer.add(kmeans.centroids)
        self._own_probes = self._probe(self.reference)
        cells = self._own_probes[:, 0]
        self.members = np.argsort(cells, kind="stable")
        self.bounds = np.searchsorted(cells[self.members], np.arange(self.nlist + 1))

    def _reduce(self, points: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((points - self.mean) @ self.projection, dtype=np.float32)

    def _probe(self, points: np.ndarray) -> np.ndarray:
        """The ``nprobe`` nearest cells of each row, shape (n, nprobe), nearest first."""
        out = np.empty((len(points), self.nprobe), np.int64)
        for start in range(0, len(points), 65536):
            _, out[start:start + 65536] = self.quantizer.search(self._reduce(points[start:start + 65536]),
                                                                self.nprobe)
        return out

    def _cells(self, points: np.ndarray, self_offset: bool, desc: str):
        """Yield ``(queries, members, sims)``: query rows, the member rows of a cell they visit and
        their cosine similarities, shape (len(queries), len(members)); each pair at most once."""
        probes = self._own_probes if self_offset else self._probe(points)
        flat = probes.ravel()
        order = np.argsort(flat, kind="stable")
        visitors = np.repeat(np.arange(len(points)), probes.shape[1])[order]
        bounds = np.searchsorted(flat[order], np.arange(self.nlist + 1))
        for cell in blocks(self.nlist, 1, desc):
            members = self.members[self.bounds[cell]:self.bounds[cell + 1]]
            if not len(members):
                continue
            block = self.reference[members]
            for start in range(bounds[cell], bounds[cell + 1], QUERY_BLOCK):
                queries = visitors[start:min(bounds[cell + 1], start + QUERY_BLOCK)]
                yield queries, members, points[queries] @ block.T

    def radius_search(self, points: np.ndarray, radius, *, self_offset: bool = True):
        """Like :func:`neardup.search.exact.radius_search` (cosine) over the indexed vectors;
        ``self_offset``: the query rows are the indexed rows themselves, whose own match is dropped."""
        points = self.reference if self_offset else unit_rows(points)
        radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(points),))
        rows, cols, dists = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
        for queries, members, sims in self._cells(points, self_offset, "approximate radius search"):
            dist = np.maximum(1.0 - sims, 0.0)
            r, c = np.nonzero(dist <= radii[queries][:, None])
            keep = queries[r] != members[c] if self_offset else slice(None)
            rows.append(queries[r][keep])
            cols.append(members[c][keep])
            dists.append(dist[r, c][keep].astype(np.float64))
        return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64), np.concatenate(dists)

    def knn_distances(self, points: np.ndarray, k: int, *, self_offset: bool = True) -> np.ndarray:
        """Like :func:`neardup.search.exact.knn_distances` (cosine) over the indexed vectors among
        the visited cells; shape (n, k), ascending, ``inf`` where fewer were seen."""
        points = self.reference if self_offset else unit_rows(points)
        best = np.full((len(points), k), np.inf, dtype=np.float32)
        for queries, members, sims in self._cells(points, self_offset, "approximate neighbour search"):
            dist = np.maximum(1.0 - sims, 0.0)
            if self_offset:
                dist[queries[:, None] == members[None, :]] = np.inf
            near = smallest(dist, min(k, dist.shape[1]))
            best[queries] = smallest(np.hstack([best[queries], near]), k)
        return np.sort(best.astype(np.float64), axis=1)
