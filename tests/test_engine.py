"""Work on real Dask workers (LocalCluster worker processes): the same vectors, hashes, manifest and
pairs as a local run, a worker killed mid-run (SIGKILL) loses no image, and the local search gives
the same bytes on 1 thread as on 2."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import save
from neardup.contract import UserError
from neardup.embed.stage import embed_images
from neardup.fetch.folder import scan_folder
from neardup.hash import hash_images
from neardup.images import scan_files
from neardup.params import EmbedParams, EngineParams, ParamsError, params_from_dict
from neardup.search import Search
from neardup.search.tasks import ThreadExecutor, search_executor

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


#: Two worker processes, started once for this module's tests (neardup.engine keeps local:N clusters).
ENGINE = EngineParams(kind="dask", address="local:2", shard_size=8)


def test_dask_workers_give_the_same_vectors(manifest, local, tmp_path, caplog):
    engine = ENGINE
    with caplog.at_level("INFO"):
        on_dask = embed_images("efficientnet-lite0", 96, manifest, params=PARAMS, cache_dir=str(tmp_path),
                               engine=engine)
    assert "embedding: 36 items in 5 shards on 2 Dask workers" in caplog.text
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


def test_fetch_scan_and_hashes_on_dask_are_the_local_ones(manifest, tmp_path, caplog):
    root = manifest["path"].map(lambda p: Path(p).parent).iloc[0]
    (root / "notes.txt").write_text("not an image")  # skipped the same way
    try:
        here = scan_folder(root, set_name="t", symlinks="inside")
        with caplog.at_level("INFO"):
            there = scan_folder(root, set_name="t", engine=ENGINE, symlinks="inside")
    finally:
        (root / "notes.txt").unlink()
    assert "scan t: 37 items in 5 shards on 2 Dask workers" in caplog.text
    assert "decode t: 37 items in 5 shards" in caplog.text  # read, then decoded (no inspection cache)
    pd.testing.assert_frame_equal(here.manifest, there.manifest)
    pd.testing.assert_frame_equal(here.skipped, there.skipped)
    local_hashes = hash_images("dhash", manifest, hash_size=8, cache_dir="")
    dask_hashes = hash_images("dhash", manifest, hash_size=8, cache_dir=str(tmp_path), engine=ENGINE)
    assert np.array_equal(local_hashes.vectors, dask_hashes.vectors) and np.isnan(dask_hashes.images_per_second)


def _clustered_points(seed: int = 0) -> np.ndarray:
    """Near-duplicate families: 300 centres with 8 noisy copies each, float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, 64)).astype(np.float32)
    return np.vstack([centres + 0.3 * rng.standard_normal(centres.shape).astype(np.float32) for _ in range(8)])


@pytest.mark.parametrize("mode", ["exact", "approximate"])
def test_pair_search_on_dask_is_the_local_one_to_the_bit(mode, tmp_path):
    pytest.importorskip("faiss")
    points = _clustered_points()
    n_ref = 2200  # the last 200 rows stand for planted copies: matched against the first 2200 only
    radii = np.random.default_rng(1).uniform(0.2, 0.4, len(points))
    found = {}
    for name, executor in (("1 thread", ThreadExecutor(workers=1)), ("2 threads", ThreadExecutor(workers=2)), ("dask", None)):
        with search_executor(ENGINE if executor is None else None, str(tmp_path)) as dask:
            search = Search(points, n_ref=n_ref, mode=mode, nprobe=4, block=128, executor=executor or dask)
            found[name] = (search.knn(9), *search.radius(radii, "cosine"))
    assert len(found["dask"][1]) > 5000  # families found
    for name in ("2 threads", "dask"):
        assert all(np.array_equal(a, b) for a, b in zip(found["1 thread"], found[name])), name
    assert not list((tmp_path / "engine").iterdir())  # the shared vectors are deleted after each search
