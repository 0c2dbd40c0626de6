"""Embedding on Dask workers (``engine.kind: dask``): the manifest split into shards, one task each.

Each task embeds one shard on a worker and writes its vectors to the content cache (``cache.dir``,
which every worker must see: a shared filesystem). The stage then assembles its output from the cache
exactly as a local run does, so both give the same bytes. A worker loads each model once and keeps
it for the tasks that follow. A task lost with its worker (killed, out of memory) is run again on
another one by Dask; the cache chunks it may have written are complete or absent (written to a
temporary name and renamed), so nothing is lost or counted twice.

``engine.address`` is a running scheduler (``tcp://host:8786``: ``dask scheduler`` and ``dask
worker`` on a cluster, or dask-jobqueue / dask-kubernetes) or ``local:N``, N worker processes started
here for the run.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import pandas as pd

from neardup.contract import UserError

log = logging.getLogger(__name__)

#: Per worker process: Embedder by settings, built on a worker's first task.
_EMBEDDERS: dict = {}


@contextmanager
def dask_client(address: str):
    """A ``distributed.Client`` for ``engine.address``; ``local:N`` starts (and then stops) a LocalCluster
    of N worker processes."""
    try:
        from distributed import Client, LocalCluster
    except ModuleNotFoundError as exc:
        raise UserError("engine.kind is dask but Dask is not installed: pip install 'neardup[scale]' "
                        "(or 'dask[distributed]')") from exc
    if address.startswith("local:"):
        with LocalCluster(n_workers=int(address[6:]), threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout="30s")
    except OSError as exc:
        raise UserError(f"engine.address {address}: no Dask scheduler answers there ({exc}); start one with "
                        f"`dask scheduler`, or set engine.address: local:2") from exc
    with client:
        yield client


def _embed_shard(shard: pd.DataFrame, settings: dict, cache_dir: str) -> int:
    """On a worker: embed ``shard`` into the vector cache; returns how many images it holds now."""
    from neardup.cache import vector_cache
    from neardup.embed import Embedder

    key = tuple(sorted(settings.items()))
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = Embedder(settings["model"], size=settings["size"], weights=settings["weights"],
                                   batch_size=settings["batch_size"], pooling=settings["pooling"],
                                   runtime=settings["runtime"], cache_dir=cache_dir)
    embedder = _EMBEDDERS[key]
    cache = vector_cache(cache_dir, model=settings["model"], size=embedder.size, pooling=settings["pooling"],
                         weights=settings["weights"], runtime=embedder.runtime)
    embedder.embed_manifest(shard, cache=cache, chunk_size=len(shard))
    return len(shard)


def embed_on_dask(manifest: pd.DataFrame, *, model: str, size: int, params, runtime: str, cache_dir: str,
                  engine) -> None:
    """Fill the vector cache for ``manifest`` on Dask workers, ``engine.shard_size`` images per task.

    Parameters
    ----------
    manifest : DataFrame
        The images (``id, path, sha256``, ...), in manifest order; only those the cache lacks are sent.
    model, size, runtime : str, int, str
        The resolved run settings (``size`` an int: ``auto`` is fitted by the caller).
    params : EmbedParams
        ``weights``, ``pooling``, ``batch_size``.
    cache_dir : str
        ``cache.dir``, which the workers must see.
    engine : EngineParams
    """
    from neardup.cache import vector_cache

    if not cache_dir:
        raise UserError("engine.kind dask needs cache.dir: the workers hand their vectors over through it")
    cache = vector_cache(cache_dir, model=model, size=size, pooling=params.pooling, weights=params.weights,
                         runtime=runtime)
    todo = manifest[[sha not in cache for sha in manifest["sha256"].astype(str)]]
    if not len(todo):
        return
    shards = [todo.iloc[i:i + engine.shard_size] for i in range(0, len(todo), engine.shard_size)]
    settings = {"model": model, "size": size, "weights": params.weights, "batch_size": params.batch_size,
                "pooling": params.pooling, "runtime": runtime}
    start = time.perf_counter()
    with dask_client(engine.address) as client:
        workers = len(client.scheduler_info()["workers"])
        log.info("embedding %d images in %d shards on %d Dask workers (%s)", len(todo), len(shards), workers,
                 engine.address)
        futures = client.map(_embed_shard, shards, settings=settings, cache_dir=cache_dir, pure=False, retries=2)
        done = sum(client.gather(futures))
    log.info("Dask workers embedded %d images in %.1f s", done, time.perf_counter() - start)
