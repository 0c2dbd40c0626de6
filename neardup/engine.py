"""Where work runs: threads of this process (:func:`cpu_cores`, :func:`ordered_map`), or Dask workers.

Work on Dask workers (``engine.kind: dask``), one task per shard: the fetch scan (files read and
decoded), embedding and hashing in shards of ``engine.shard_size`` images, and the pair search in
row blocks or cells (:class:`neardup.search.tasks.DaskExecutor`).

Embedding and hashing: each task embeds (hashes) one shard on a worker and writes its vectors to the
content cache (``cache.dir``, which every worker must see: a shared filesystem); the stage then
assembles its output from the cache exactly as a local run does, so both give the same bytes. A
worker loads each model once and keeps it for the tasks that follow. A task lost with its worker
(killed, out of memory) is run again on another one by Dask; the cache chunks it may have written
are complete or absent (written to a temporary name and renamed), so nothing is lost or counted twice.

The fetch scan returns each file's content hash and inspection to the stage, which writes the
manifest as a local scan does.

``engine.address`` is a running scheduler (``tcp://host:8786``: ``dask scheduler`` and ``dask
worker`` on a cluster, or dask-jobqueue / dask-kubernetes) or ``local:N``, N worker processes started
here for the run.
"""
from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from contextlib import contextmanager

import pandas as pd

from neardup.contract import UserError

log = logging.getLogger(__name__)


def _progress_bar():
    """tqdm's bar for where it runs: in a Jupyter kernel, a notebook's widget when ipywidgets is there
    (``tqdm.auto``), else the text bar, without the warning ``tqdm.auto`` gives in a notebook that lacks
    ipywidgets. Outside a kernel (every stage, command and Dask worker) neither ipywidgets nor IPython
    is imported: ``tqdm.auto`` would give the text bar there too, after ~100 ms of imports."""
    if "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401
            from tqdm.auto import tqdm as bar

            return bar
        except ImportError:
            pass
    from tqdm import tqdm as bar

    return bar


#: The progress bar every step shows (:func:`_progress_bar`).
tqdm = _progress_bar()


def cpu_cores() -> int:
    """The cores this process may run on: its affinity mask (else ``os.cpu_count()``); inside a Dask
    task, at most the worker's threads (``--nthreads``: the cores a worker was given)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        cores = max(1, os.cpu_count() or 1)
    dask = sys.modules.get("distributed")  # only imported where Dask runs
    if dask is not None:
        try:
            return min(cores, int(dask.get_worker().state.nthreads))
        except ValueError:  # not inside a task
            pass
    return cores


def ordered_map(function, items, *, desc: str = "", unit: str = "item", threads: int | None = None, count=None):
    """``function(item)`` for each of ``items``, yielded in order, computed on one thread per core (for
    work that releases the GIL: decoding, hashing bytes, OpenCV), with a progress bar when ``desc`` is
    given (advanced by ``count(item)`` per item, default 1). ``function`` must not raise for one bad
    item (return the error instead)."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    threads = max(1, min(threads or cpu_cores(), len(items)))
    count = count or (lambda item: 1)
    total = sum(count(item) for item in items)
    with tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not desc or not items) as bar:
        if threads == 1:
            for item in items:
                yield function(item)
                bar.update(count(item))
            return
        with ThreadPoolExecutor(threads) as pool:
            for item, result in zip(items, pool.map(function, items)):
                yield result
                bar.update(count(item))



#: This process's LocalClusters (``local:N``) by address: started once, stopped at exit.
_LOCAL: dict = {}


def _close_local() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # workers' last heartbeats are no news
    while _LOCAL:
        client, cluster = _LOCAL.popitem()[1]
        client.close()
        cluster.close()


@contextmanager
def dask_client(address: str):
    """A ``distributed.Client`` for ``engine.address``; ``local:N`` starts a LocalCluster of N worker
    processes on first use and keeps it for the rest of this process (a stage's several steps)."""
    try:
        from distributed import Client, LocalCluster
    except ModuleNotFoundError as exc:
        raise UserError("engine.kind is dask but Dask is not installed: pip install 'neardup[scale]' "
                        "(or 'dask[distributed]')") from exc
    if address.startswith("local:"):
        if address not in _LOCAL or _LOCAL[address][0].status != "running":
            if not _LOCAL:
                atexit.register(_close_local)
            cluster = LocalCluster(n_workers=int(address[6:]), threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            _LOCAL[address] = (Client(cluster), cluster)
        yield _LOCAL[address][0]
        return
    try:
        client = Client(address, timeout="30s")
    except OSError as exc:
        raise UserError(f"engine.address {address}: no Dask scheduler answers there ({exc}); start one with "
                        f"`dask scheduler`, or set engine.address: local:2") from exc
    with client:
        yield client


def require_cache_dir(cache_dir: str, what: str) -> None:
    """Dask workers hand their results over (and read shared arrays) through ``cache.dir``: stop with one
    line when it is off. ``what``: what they exchange there, for the message."""
    if not cache_dir:
        raise UserError(f"engine.kind dask needs cache.dir: the workers exchange {what} through it, so set "
                        f"cache.dir to a folder every worker sees")


def map_on_dask(task, items, *, engine, what: str, **kwargs) -> list:
    """``task(shard, **kwargs)`` on Dask workers for every shard of ``engine.shard_size`` items (a list or
    the rows of a DataFrame); the results in shard order. A task lost with its worker is run again
    (twice at most)."""
    rows = items.iloc if isinstance(items, pd.DataFrame) else items
    shards = [rows[i:i + engine.shard_size] for i in range(0, len(items), engine.shard_size)]
    if not shards:
        return []
    start = time.perf_counter()
    with dask_client(engine.address) as client:
        log.info("%s: %d items in %d shards on %d Dask workers (%s)", what, len(items), len(shards),
                 len(client.scheduler_info()["workers"]), engine.address)
        results = client.gather(client.map(task, shards, pure=False, retries=2, **kwargs))
    log.info("%s: %d items on Dask workers in %.1f s", what, len(items), time.perf_counter() - start)
    return results


def missing_from(manifest: pd.DataFrame, cache) -> pd.DataFrame:
    """The rows of ``manifest`` whose content ``cache`` lacks."""
    return manifest[[sha not in cache for sha in manifest["sha256"].astype(str)]]
