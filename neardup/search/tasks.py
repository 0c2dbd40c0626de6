"""Where the blocks of a search run: threads of this process (:class:`ThreadExecutor`) or Dask workers
(:class:`DaskExecutor`), with the same bytes either way.

A search is cut into tasks (a block of rows of the exact search, a cell of the approximate one),
each a pure function ``fn(arrays, *args)`` of a few shared arrays (the vectors, the radii) and its
own small arguments. A executor hands back the results in task order, and the caller merges them in
that order. Every task runs BLAS on one thread: a matrix product's last bits depend on how many
threads split it, so fixing it at one makes the pairs and distances the same on 2 cores, on 64
and on Dask workers (the work is spread over tasks instead).

On Dask, the shared arrays are written once to ``.npy`` files in ``<cache.dir>/engine/`` (which the
workers must see), memory-mapped by each worker, and deleted when the search ends.
"""
from __future__ import annotations

import logging
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from neardup.contract import atomic_write
from neardup.engine import cpu_cores, dask_client, require_cache_dir

log = logging.getLogger(__name__)


def ordered(submit: Callable, tasks: Sequence[tuple], ahead: int) -> Iterator:
    """Results of ``submit(*task)`` futures in task order, at most ``ahead`` in flight (memory bound)."""
    pending: deque = deque()
    for task in tasks:
        pending.append(submit(*task))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class ThreadExecutor:
    """Tasks on a pool of threads of this process, one per core (NumPy releases the GIL in BLAS).

    Parameters
    ----------
    workers : int, optional
        Threads; default one per core of the affinity mask.
    """

    kind = "local"

    def __init__(self, workers: int | None = None):
        self.workers = int(workers or cpu_cores())

    def map(self, fn: Callable, arrays: dict, tasks: Sequence[tuple]) -> Iterator:
        """``fn(arrays, *task)`` for every task, results in task order."""
        if not tasks:
            return
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(self.workers) as pool:
            yield from ordered(lambda *task: pool.submit(fn, arrays, *task), tasks, 2 * self.workers)


#: Per Dask worker process: the shared arrays of the last searches, memory-mapped, by file.
_MAPPED: dict = {}


def _mapped(path: str, shape: tuple, dtype: str) -> np.ndarray:
    """The shared array at ``path``, memory-mapped once per worker, checked against what was written."""
    if path not in _MAPPED:
        while len(_MAPPED) >= 8:  # a few searches' arrays; older ones are unmapped
            _MAPPED.pop(next(iter(_MAPPED)))
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if array.shape != tuple(shape) or array.dtype.str != dtype:
            raise OSError(f"{path} holds {array.dtype.str} {array.shape}, not the {dtype} {tuple(shape)} written: "
                          f"is {Path(path).parent} the same folder on every worker?")
        _MAPPED[path] = array
    return _MAPPED[path]


def _search_task(fn, shared: dict, *args):
    """On a worker: one search task over the shared arrays, BLAS on one thread (as the local threads)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return fn({name: _mapped(*where) for name, where in shared.items()}, *args)


class DaskExecutor:
    """Search tasks on Dask workers (the interface of :class:`ThreadExecutor`).

    Parameters
    ----------
    client : distributed.Client
    folder : Path
        Where the shared arrays are written (``<cache.dir>/engine``: the workers must see it); each
        is deleted when its search ends.
    """

    kind = "dask"

    def __init__(self, client, folder: Path):
        self.client, self.folder = client, Path(folder)
        self.workers = max(1, len(client.scheduler_info()["workers"]))

    def _share(self, array: np.ndarray) -> tuple[str, tuple, str]:
        """Write ``array`` for the workers: ``(path, shape, dtype)``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{uuid.uuid4().hex}.npy"
        array = np.ascontiguousarray(array)

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)

        atomic_write(path, write)  # workers never see a part-written file
        return str(path), array.shape, array.dtype.str

    def map(self, fn, arrays: dict, tasks):
        """``fn(arrays, *task)`` for every task on the workers, results in task order."""
        if not tasks:
            return
        shared = {name: self._share(array) for name, array in arrays.items()}
        try:
            yield from ordered(lambda *task: self.client.submit(_search_task, fn, shared, *task, pure=False,
                                                                retries=2), tasks, 4 * self.workers)
        finally:
            for path, _, _ in shared.values():
                Path(path).unlink(missing_ok=True)


@contextmanager
def search_executor(engine, cache_dir: str):
    """Where the pair search runs: threads here (``engine`` None or local) or Dask workers."""
    if engine is None or engine.kind == "local":
        yield ThreadExecutor()
        return

    require_cache_dir(cache_dir, "the pair search's vectors")

    with dask_client(engine.address) as client:
        executor = DaskExecutor(client, Path(cache_dir) / "engine")
        log.info("pair search on %d Dask workers (%s)", executor.workers, engine.address)
        yield executor
