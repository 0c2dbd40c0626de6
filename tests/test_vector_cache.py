"""The content-hash vector cache: only new images are embedded, a killed run resumes."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, save
from neardup.cache import CACHE_VERSION, VectorCache, descriptor_key, vector_cache
from neardup.embed import Embedder
from neardup.images import scan_files


def folder_of(tmp_path, n, seed=0):
    rng = np.random.default_rng(seed)
    for k in range(n):
        save((rng.random((48, 64, 3)) * 255).astype(np.uint8), tmp_path / "img" / f"{seed}_{k:03d}.jpg")
    return scan_files(sorted((tmp_path / "img").glob(f"{seed}_*.jpg")), root=tmp_path / "img", set_name="train").manifest


def test_cache_round_trip_and_partial_files_are_ignored(tmp_path):
    cache = VectorCache(tmp_path, "k", {"model": "m"})
    cache.add(["a", "b"], np.eye(2, 3))
    (tmp_path / "k" / ".deadbeef.123.tmp.npz").write_bytes(b"half written")
    again = VectorCache(tmp_path, "k")
    assert len(again) == 2 and "a" in again and np.array_equal(again.get("b"), [0, 1, 0])
    assert descriptor_key(model="m", size=96) == descriptor_key(size=96, model="m") != descriptor_key(model="m")


def test_vector_cache_is_one_folder_per_setting_and_off_without_a_root(tmp_path):
    assert vector_cache("", model="m", size=96) is None  # cache.dir: '' turns it off
    settings = {"model": "efficientnet-lite0", "size": 96, "pooling": "max", "weights": "imagenet"}
    cache = vector_cache(str(tmp_path), **settings)
    assert cache.folder == tmp_path / descriptor_key(**settings, version=CACHE_VERSION)
    assert vector_cache(str(tmp_path), **{**settings, "pooling": "avg"}).folder != cache.folder
    cache.add(["s1"], np.ones((1, 4)))
    written = json.loads((cache.folder / "settings.json").read_text())
    assert written == {**settings, "version": CACHE_VERSION}  # for people reading the cache
    again = vector_cache(str(tmp_path), **settings)
    assert len(again) == 1 and np.array_equal(again.get("s1"), np.ones(4, np.float32))


@pytest.fixture(scope="module")
def embedder():
    return Embedder("efficientnet-lite0", size=64, weights="imagenet", batch_size=4, pooling="avg")


def test_only_new_images_are_embedded(embedder, tmp_path):
    manifest = folder_of(tmp_path, 10)
    plain = embedder.embed_manifest(manifest)
    cache = VectorCache(tmp_path / "cache", "k")
    first = embedder.embed_manifest(manifest, cache=cache, chunk_size=4)
    assert len(cache) == 10 and np.allclose(first.vectors, plain.vectors, atol=1e-5)
    again = embedder.embed_manifest(manifest, cache=VectorCache(tmp_path / "cache", "k"))
    assert np.isnan(again.images_per_second) and np.array_equal(again.vectors, first.vectors)  # nothing embedded
    bigger = pd.concat([manifest, folder_of(tmp_path, 3, seed=1)]).sort_values("id").reset_index(drop=True)
    cache = VectorCache(tmp_path / "cache", "k")
    grown = embedder.embed_manifest(bigger, cache=cache)
    assert len(cache) == 13 and len(grown.ids) == 13
    assert np.array_equal(grown.vectors[:10], first.vectors)


SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from neardup.embed import Embedder
    from neardup.contract import read_table
    from neardup.cache import VectorCache
    manifest = read_table({manifest!r})
    Embedder("efficientnet-lite0", size=64, weights="imagenet", batch_size=4, pooling="avg").embed_manifest(
        manifest, cache=VectorCache(Path({cache!r}), "k"), chunk_size=4)
""")


def test_a_killed_run_resumes_and_gives_the_same_vectors(embedder, tmp_path):
    manifest = folder_of(tmp_path, 60)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    script = SCRIPT.format(repo=str(REPO), manifest=str(tmp_path / "manifest.csv"), cache=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    chunks = tmp_path / "cache" / "k"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(chunks.glob("chunk_*.npz"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(VectorCache(tmp_path / "cache", "k"))
    assert 0 < done < 60, done  # killed mid-way, after some finished chunks
    cache = VectorCache(tmp_path / "cache", "k")
    resumed = embedder.embed_manifest(manifest, cache=cache, chunk_size=4)
    assert len(cache) == 60
    assert resumed.images_per_second > 0  # the rest was embedded ...
    uninterrupted = embedder.embed_manifest(manifest)
    assert list(resumed.ids) == list(uninterrupted.ids)
    assert np.allclose(resumed.vectors, uninterrupted.vectors, atol=1e-5)  # ... to the same vectors


def test_hashes_are_cached_by_content_too(tmp_path):
    from neardup.hash import hash_manifest

    manifest = folder_of(tmp_path, 6)
    plain = hash_manifest(manifest, method="dhash", hash_size=8)
    cache = VectorCache(tmp_path / "cache", "h")
    first = hash_manifest(manifest, method="dhash", hash_size=8, cache=cache, chunk_size=4)
    assert len(cache) == 6 and np.array_equal(first.vectors, plain.vectors)
    # the cached images are not decoded again: even a file emptied since hashes from the cache
    (tmp_path / "img" / "0_000.jpg").write_bytes(b"")
    again = hash_manifest(manifest, method="dhash", hash_size=8, cache=VectorCache(tmp_path / "cache", "h"))
    assert np.isnan(again.images_per_second) and np.array_equal(again.vectors, first.vectors)
    # a new image is hashed, a broken new one is skipped with its reason, nothing is lost
    bigger = pd.concat([manifest, folder_of(tmp_path, 2, seed=1)]).reset_index(drop=True)
    (tmp_path / "img" / "1_001.jpg").write_bytes(b"not a jpeg")
    bigger.loc[bigger["id"].str.endswith("1_001.jpg"), "sha256"] = "changed"
    grown = hash_manifest(bigger, method="dhash", hash_size=8, cache=VectorCache(tmp_path / "cache", "h"))
    assert len(grown.ids) == 7 and grown.skipped["id"].tolist() == [bigger["id"].iloc[-1]]
    assert "could not be hashed" in grown.skipped["reason"].iloc[0] and len(VectorCache(tmp_path / "cache", "h")) == 7


def test_a_rescan_decodes_only_new_content(tmp_path, monkeypatch):
    import neardup.images as manifest_module
    from neardup.cache import InspectionCache

    first = folder_of(tmp_path, 5)
    (tmp_path / "img" / "0_broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    paths = sorted((tmp_path / "img").glob("0_*"))
    cold = scan_files(paths, root=tmp_path / "img", set_name="train", cache=InspectionCache(tmp_path / "c"))
    assert len(cold.manifest) == 5 and len(cold.skipped) == 1 and len(InspectionCache(tmp_path / "c")) == 6
    assert cold.manifest.equals(first)
    decoded = []
    real_inspect = manifest_module.inspect_image
    monkeypatch.setattr(manifest_module, "inspect_image", lambda p: decoded.append(p) or real_inspect(p))
    # a new file and a file whose content changed are decoded; the other five come from the cache
    save(np.zeros((40, 40, 3), np.uint8), tmp_path / "img" / "0_new.jpg")
    save(np.full((40, 40, 3), 200, np.uint8), tmp_path / "img" / "0_003.jpg")
    paths = sorted((tmp_path / "img").glob("0_*"))
    warm = scan_files(paths, root=tmp_path / "img", set_name="train", cache=InspectionCache(tmp_path / "c"))
    assert sorted(p.name for p in decoded) == ["0_003.jpg", "0_new.jpg"]
    assert len(warm.manifest) == 6 and warm.skipped.equals(cold.skipped)
    keep = ~warm.manifest["id"].isin(["0_003.jpg", "0_new.jpg"])
    assert warm.manifest[keep].reset_index(drop=True).equals(cold.manifest[cold.manifest["id"] != "0_003.jpg"]
                                                             .reset_index(drop=True))
