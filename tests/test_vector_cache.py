"""The content-hash vector cache: only new images are embedded, a killed run resumes."""
import json
import logging
import os
import re
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
from neardup.contract import write_table
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


def test_the_embed_cache_key_names_how_the_pixels_are_made(tmp_path, monkeypatch):
    """Vectors made from another input (Pillow's resize before issue 28) are never taken for these."""
    import neardup.embed.stage as stage

    settings = {"model": "efficientnet-lite0", "size": 224, "pooling": "max", "weights": "imagenet",
                "runtime": "tflite", "batch_size": 32}
    cache = stage.variant_cache(str(tmp_path), settings)
    cache.add(["s1"], np.ones((1, 4)))
    assert json.loads((cache.folder / "settings.json").read_text())["input"] == stage.INPUT
    assert stage.variant_cache(str(tmp_path), {**settings, "batch_size": 8}).folder == cache.folder
    monkeypatch.setattr(stage, "INPUT", "pillow antialiased bicubic")
    other = stage.variant_cache(str(tmp_path), settings)
    assert other.folder != cache.folder and "s1" not in other


def two_chunks(tmp_path):
    """A cache folder with two chunks written by VectorCache.add: ``{chunk file: (sha256s, vectors)}``."""
    cache = VectorCache(tmp_path, "k")
    written = {}
    for sha256s, seed in ((["a", "b"], 0), (["c", "d", "e"], 1)):
        vectors = np.random.default_rng(seed).random((len(sha256s), 4)).astype(np.float32)
        before = set(cache.folder.glob("chunk_*.npz"))
        cache.add(sha256s, vectors)
        (chunk,) = set(cache.folder.glob("chunk_*.npz")) - before
        written[chunk] = (sha256s, vectors)
    return written


def test_a_fresh_chunk_round_trips_with_its_checksum(tmp_path, caplog):
    written = two_chunks(tmp_path)
    for chunk in written:
        with np.load(chunk) as z:
            assert set(z.files) == {"sha256", "vectors", "checksum"} and len(str(z["checksum"])) == 64
    with caplog.at_level("WARNING", logger="neardup.cache"):
        again = VectorCache(tmp_path, "k")
    assert not caplog.records and len(again) == 5
    for sha256s, vectors in written.values():
        for sha, vector in zip(sha256s, vectors):
            assert np.array_equal(again.get(sha), vector)
    assert all(chunk.is_file() for chunk in written)


def _truncate(chunk, written):
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])


def _garbage(chunk, written):
    chunk.write_bytes(np.random.default_rng(0).bytes(300))


def _copied_over(chunk, written):
    other = next(c for c in written if c != chunk)
    chunk.write_bytes(other.read_bytes())  # a valid chunk, under the wrong name


def _edited(chunk, written):
    with np.load(chunk) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["vectors"] = arrays["vectors"] + 1  # a valid npz with the old checksum
    np.savez(chunk, **arrays)


def _no_checksum(chunk, written):
    with np.load(chunk) as z:
        arrays = {name: z[name] for name in z.files if name != "checksum"}
    np.savez(chunk, **arrays)  # as written before chunks carried checksums


@pytest.mark.parametrize("damage, why", [
    (_truncate, "is unreadable"), (_garbage, "is unreadable"),
    (_copied_over, r"holds the content of chunk_[0-9a-f]{20}\.npz \(copied over another chunk's name\)"),
    (_edited, "fails its checksum"), (_no_checksum, "has no checksum array"),
])
def test_a_damaged_chunk_is_deleted_with_one_warning_and_its_vectors_are_not_served(tmp_path, caplog, damage, why):
    written = two_chunks(tmp_path)
    (bad, (bad_shas, _)), (good, (good_shas, good_vectors)) = sorted(written.items(), key=lambda kv: len(kv[1][0]))
    damage(bad, written)
    with caplog.at_level("WARNING", logger="neardup.cache"):
        cache = VectorCache(tmp_path, "k")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"cache chunk {bad} ") and re.search(why, warnings[0])
    assert "deleted it; its entries will be computed again" in warnings[0]
    assert not bad.exists() and good.is_file()
    assert not any(sha in cache for sha in bad_shas) and len(cache) == len(good_shas)
    assert all(np.array_equal(cache.get(s), v) for s, v in zip(good_shas, good_vectors))
    # the next add writes a good chunk again, which the next opening serves without a warning
    caplog.clear()
    cache.add(bad_shas, np.ones((len(bad_shas), 4)))
    with caplog.at_level("WARNING", logger="neardup.cache"):
        assert len(VectorCache(tmp_path, "k")) == len(bad_shas) + len(good_shas) and not caplog.records


def test_a_damaged_chunk_is_recomputed_by_the_hash_stage(tmp_path, caplog):
    from neardup.hash import hash_manifest

    manifest = folder_of(tmp_path, 4)
    first = hash_manifest(manifest, method="dhash", hash_size=8, cache=VectorCache(tmp_path / "cache", "h"))
    (chunk,) = (tmp_path / "cache" / "h").glob("chunk_*.npz")
    _edited(chunk, {})
    with caplog.at_level("WARNING", logger="neardup.cache"):
        again = hash_manifest(manifest, method="dhash", hash_size=8, cache=VectorCache(tmp_path / "cache", "h"))
    assert sum("fails its checksum" in r.getMessage() for r in caplog.records) == 1
    assert again.images_per_second > 0 and np.array_equal(again.vectors, first.vectors)  # hashed again, the same


@pytest.fixture(scope="module")
def embedder(model_cache):
    return Embedder("efficientnet-lite0", size=64, weights="imagenet", batch_size=4, pooling="avg",
                    cache_dir=model_cache)


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
    Embedder("efficientnet-lite0", size=64, weights="imagenet", batch_size=4, pooling="avg",
             cache_dir={model_cache!r}).embed_manifest(
        manifest, cache=VectorCache(Path({cache!r}), "k"), chunk_size=4)
""")


def test_a_killed_run_resumes_and_gives_the_same_vectors(embedder, tmp_path, model_cache):
    manifest = folder_of(tmp_path, 60)
    write_table(manifest, tmp_path / "manifest.csv")
    script = SCRIPT.format(repo=str(REPO), manifest=str(tmp_path / "manifest.csv"), cache=str(tmp_path / "cache"),
                           model_cache=model_cache)
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
    monkeypatch.setattr(manifest_module, "inspect_image", lambda p, **kw: decoded.append(p) or real_inspect(p, **kw))
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


@pytest.mark.parametrize("damage", ["truncate", "garbage", "edit", "swap", "old_format"])
def test_a_damaged_scan_cache_chunk_is_discarded_with_a_warning(tmp_path, caplog, damage):
    """The scan (inspection) cache is verified too: a bad chunk is deleted, named in one warning, and its
    files are inspected again; nothing raises."""
    from neardup.cache import InspectionCache

    first = InspectionCache(tmp_path, flush_every=2)
    for k in range(4):  # two chunks of two entries
        first.put(f"{k:064x}", {"width": k + 1, "height": 1, "format": "PNG"}, None)
    first.flush()
    chunks = sorted(first.folder.glob("chunk_*.json"))
    assert len(chunks) == 2 and len(InspectionCache(tmp_path)) == 4
    target, other = chunks
    if damage == "truncate":
        target.write_text(target.read_text()[:25])
    elif damage == "garbage":
        target.write_bytes(b"\xff\x00not json")
    elif damage == "edit":
        data = json.loads(target.read_text())
        data["rows"][0][1]["width"] = 99  # valid JSON, the checksum left as it was
        target.write_text(json.dumps(data))
    elif damage == "swap":
        target.write_text(other.read_text())
    else:
        target.write_text(json.dumps(json.loads(target.read_text())["rows"]))
    caplog.set_level(logging.WARNING, logger="neardup.cache")
    again = InspectionCache(tmp_path)
    assert len(again) == 2 and not target.exists() and other.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and target.name in warnings[0]
