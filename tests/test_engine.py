"""Embedding on real Dask workers (LocalCluster worker processes): the same vectors as a local run, and
a worker killed mid-run (SIGKILL) loses no image."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from conftest import save
from neardup.contract import UserError
from neardup.embed.run import embed_images
from neardup.images import scan_files
from neardup.params import EmbedParams, EngineParams, ParamsError, params_from_dict

distributed = pytest.importorskip("distributed")
PARAMS = EmbedParams(models=("efficientnet-lite0",), sizes=("auto",), weights="imagenet", pooling="max",
                     batch_size=4, runtime="auto")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("engine")
    rng = np.random.default_rng(0)
    arrays = list(photos.values())
    for k in range(36):  # crops of the photos: 36 distinct images
        a = arrays[k % len(arrays)]
        y, x = rng.integers(0, a.shape[0] // 3), rng.integers(0, a.shape[1] // 3)
        save(a[y:y + a.shape[0] // 2, x:x + a.shape[1] // 2], root / f"{k:02d}.jpg", quality=90)
    return scan_files(sorted(root.glob("*.jpg")), root=root, set_name="t").manifest


@pytest.fixture(scope="module")
def local(manifest, tmp_path_factory, model_cache):
    return embed_images("efficientnet-lite0", 96, manifest, params=PARAMS, cache_dir=model_cache)


def test_dask_workers_give_the_same_vectors(manifest, local, tmp_path, caplog):
    engine = EngineParams(kind="dask", address="local:2", shard_size=8)
    with caplog.at_level("INFO"):
        on_dask = embed_images("efficientnet-lite0", 96, manifest, params=PARAMS, cache_dir=str(tmp_path),
                               engine=engine)
    assert "36 images in 5 shards on 2 Dask workers" in caplog.text
    assert list(on_dask.ids) == list(local.ids) and np.array_equal(on_dask.vectors, local.vectors)  # bit for bit
    # the stage assembled everything from the cache the workers filled: nothing embedded in this process
    assert np.isnan(on_dask.images_per_second)


def test_a_killed_worker_loses_no_image(manifest, local, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        pids = [w.process.pid for w in cluster.workers.values()]
        chunks = tmp_path / "cache"

        def kill_one_after_the_first_shard():
            deadline = time.time() + 240
            while time.time() < deadline and not list(chunks.rglob("chunk_*.npz")):
                time.sleep(0.05)
            os.kill(pids[0], signal.SIGKILL)  # mid-run: other shards are queued or running on it

        killer = threading.Thread(target=kill_one_after_the_first_shard)
        killer.start()
        engine = EngineParams(kind="dask", address=cluster.scheduler_address, shard_size=4)
        on_dask = embed_images("efficientnet-lite0", 96, manifest, params=PARAMS, cache_dir=str(chunks),
                               engine=engine)
        killer.join()
    assert list(on_dask.ids) == list(local.ids) and np.array_equal(on_dask.vectors, local.vectors)


def test_engine_params_are_checked(tmp_path):
    with pytest.raises(ParamsError, match="engine.address must name a Dask scheduler"):
        params_from_dict({"engine": {"kind": "dask", "address": "", "shard_size": 8}}, "engine")
    with pytest.raises(ParamsError, match="local:N needs a number of workers"):
        params_from_dict({"engine": {"kind": "dask", "address": "local:x", "shard_size": 8}}, "engine")
    with pytest.raises(UserError, match="engine.kind dask needs cache.dir"):
        embed_images("efficientnet-lite0", 96, scan_files([], root=tmp_path, set_name="t").manifest.head(0),
                     params=PARAMS, cache_dir="", engine=EngineParams(kind="dask", address="local:1", shard_size=8))
