"""Approximate cosine neighbour search for datasets too large for the exact O(N^2) search.

An inverted-file index searched cell by cell:

1. the unit vectors are projected on their first principal directions (``reduced_dim``, fitted on
   a seeded sample) and split into ``nlist ~ 4 sqrt(N)`` cells by FAISS k-means in that small space;
2. each query visits its ``nprobe`` nearest cells (found in the small space too);
3. distances are then computed exactly, in full dimension, one cell at a time: the cell's members
   against every query visiting it, as one BLAS product.

Each cell of step 3 is one task (:mod:`neardup.search.tasks`: threads here, or Dask tasks). Step 3
keeps a cell in cache while all its queries pass, so the search runs at matrix-product
speed (FAISS's own IVF scan goes query by query and is bound by memory bandwidth at 1280-d). Every
distance returned is exact; a pair is missed only when a query does not visit its partner's cell,
and :func:`neardup.search.exact.pair_recall` measures how often. The index keeps no copy of the
vectors, only ``N x reduced_dim`` floats and the cell lists.
"""
from __future__ import annotations

import numpy as np

from neardup.contract import UserError
from neardup.search.exact import progress, smallest, unit_rows
from neardup.search.tasks import ThreadExecutor

#: Queries per matrix product within one cell.
QUERY_BLOCK = 8192
#: Consecutive cells are grouped into about this many tasks per worker (a Dask task costs ~3-5 ms).
CELL_TASKS_PER_WORKER = 16


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
    executor : ThreadExecutor or DaskExecutor (neardup.search.tasks), optional
        Where the cells are searched, consecutive cells grouped into about ``CELL_TASKS_PER_WORKER``
        tasks per worker (:mod:`neardup.search.tasks`); default threads here.
    """

    def __init__(self, reference: np.ndarray, *, nprobe: int, seed: int = 0, reduced_dim: int = 64,
                 executor=None):
        self.executor = executor or ThreadExecutor()
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

    def _cell_tasks(self, points: np.ndarray, self_offset: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(members, queries)`` per cell: its member rows and the query rows that visit it."""
        probes = self._own_probes if self_offset else self._probe(points)
        flat = probes.ravel()
        order = np.argsort(flat, kind="stable")
        visitors = np.repeat(np.arange(len(points)), probes.shape[1])[order]
        bounds = np.searchsorted(flat[order], np.arange(self.nlist + 1))
        tasks = []
        for cell in range(self.nlist):
            members = self.members[self.bounds[cell]:self.bounds[cell + 1]]
            if len(members) and bounds[cell + 1] > bounds[cell]:
                tasks.append((members, visitors[bounds[cell]:bounds[cell + 1]]))
        return tasks

    def _map(self, fn, points: np.ndarray, radii, self_offset: bool, *args, desc: str):
        """``fn`` over the cells (tasks of :mod:`neardup.search.tasks`), results in cell order."""
        arrays = {"reference": self.reference}
        if not self_offset:
            arrays["points"] = points
        if radii is not None:
            arrays["radii"] = radii
        cells = self._cell_tasks(points, self_offset)
        per_task = max(1, len(cells) // (CELL_TASKS_PER_WORKER * self.executor.workers))  # fewer, larger tasks
        tasks = [(cells[i:i + per_task], self_offset, *args) for i in range(0, len(cells), per_task)]
        return progress(self.executor.map(fn, arrays, tasks), len(tasks), desc)

    def radius_search(self, points: np.ndarray, radius, *, self_offset: bool = True):
        """Like :func:`neardup.search.exact.radius_search` (cosine) over the indexed vectors;
        ``self_offset``: the query rows are the indexed rows themselves, whose own match is dropped."""
        points = self.reference if self_offset else unit_rows(points)
        radii = np.ascontiguousarray(np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(points),)))
        found = [(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))]
        found += self._map(_cell_radius_task, points, radii, self_offset, desc="approximate radius search")
        return tuple(np.concatenate(part) for part in zip(*found))

    def knn_distances(self, points: np.ndarray, k: int, *, self_offset: bool = True) -> np.ndarray:
        """Like :func:`neardup.search.exact.knn_distances` (cosine) over the indexed vectors among
        the visited cells; shape (n, k), ascending, ``inf`` where fewer were seen."""
        points = self.reference if self_offset else unit_rows(points)
        best = np.full((len(points), k), np.inf, dtype=np.float32)
        for cell in self._map(_cell_knn_task, points, None, self_offset, k, desc="approximate neighbour search"):
            for queries, near in cell:
                best[queries] = smallest(np.hstack([best[queries], near]), k)
        return np.sort(best.astype(np.float64), axis=1)


def _cells_sims(arrays: dict, cells):
    """Yield ``(members, queries, sims)`` for each ``(members, queries)`` cell in turn: cosine
    similarities of the visiting query rows to the cell's members, ``QUERY_BLOCK`` queries at a
    time, shape (len(queries), len(members))."""
    points = arrays.get("points", arrays["reference"])
    for members, queries in cells:
        block = arrays["reference"][members]
        for start in range(0, len(queries), QUERY_BLOCK):
            chunk = queries[start:start + QUERY_BLOCK]
            yield members, chunk, points[chunk] @ block.T


def _cell_radius_task(arrays: dict, cells, self_offset: bool):
    """The pairs of some cells within the queries' radii (a task), in cell order; each pair at most once."""
    rows, cols, dists = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    for members, chunk, sims in _cells_sims(arrays, cells):
        dist = np.maximum(1.0 - sims, 0.0)
        r, c = np.nonzero(dist <= arrays["radii"][chunk][:, None])
        keep = chunk[r] != members[c] if self_offset else slice(None)
        rows.append(chunk[r][keep].astype(np.int64))
        cols.append(members[c][keep].astype(np.int64))
        dists.append(dist[r, c][keep].astype(np.float64))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(dists)


def _cell_knn_task(arrays: dict, cells, self_offset: bool, k: int):
    """``[(queries, nearest)]``: each visiting query's ``k`` smallest distances, cell by cell (a task)."""
    out = []
    for members, chunk, sims in _cells_sims(arrays, cells):
        dist = np.maximum(1.0 - sims, 0.0)
        if self_offset:
            dist[chunk[:, None] == members[None, :]] = np.inf
        out.append((chunk, smallest(dist, min(k, dist.shape[1])).copy()))
    return out
