"""Tests of neardup.hash: perceptual hashes as -1/+1 vectors, on real photos."""
from __future__ import annotations

import itertools
import shutil

import imagehash
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics.pairwise import cosine_distances

from conftest import save
from neardup.contract import Embeddings
from neardup.hash import HASH_METHODS, hash_image, hash_manifest, hash_vectors, is_hash_method
from neardup.images import scan_files



def hamming_to_cosine(bits: int, n_bits: int = 64) -> float:
    """Cosine distance of two -1/+1 hash vectors ``bits`` apart: ``2 * h / n_bits``."""
    return 2 * bits / n_bits


#: The usual near-duplicate rule, Hamming distance <= 10 of 64 bits, as a cosine distance.
NEAR = hamming_to_cosine(10)


def _manifest(root, names=None) -> pd.DataFrame:
    paths = [root / n for n in names] if names is not None else sorted(p for p in root.iterdir() if p.is_file())
    result = scan_files(paths, root=root, set_name="train")
    assert result.skipped.empty
    return result.manifest


def _by_id(emb: Embeddings) -> dict[str, np.ndarray]:
    return dict(zip(emb.ids, emb.vectors))


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(cosine_distances(a[None], b[None])[0, 0])


@pytest.fixture(scope="module")
def dataset(photos, tmp_path_factory):
    """Each photo as PNG, plus a JPEG quality-40 copy and a half-size copy of it."""
    root = tmp_path_factory.mktemp("hashing")
    for name, array in photos.items():
        save(array, root / f"{name}.png")
        save(array, root / f"{name}_q40.jpg", quality=40)
        h, w = array.shape[:2]
        half = np.asarray(Image.fromarray(array).resize((w // 2, h // 2), Image.LANCZOS))
        save(half, root / f"{name}_half.png")
    return root, _manifest(root)


def test_names():
    assert HASH_METHODS == ("phash", "dhash", "ahash", "whash")
    assert all(is_hash_method(m) for m in HASH_METHODS)
    assert not is_hash_method("efficientnet-lite0") and not is_hash_method("md5")
    assert NEAR == 0.3125  # the usual pHash threshold of params.yaml's eps sweep


def test_cosine_of_hash_vectors_is_twice_the_hamming_share():
    rng = np.random.default_rng(0)
    bits = rng.random((2, 64)) < 0.5
    for h in (0, 1, 10, 33, 64):
        other = bits[0].copy()
        other[:h] = ~other[:h]
        vectors = hash_vectors(np.stack([bits[0], other]))
        assert _distance(vectors[0], vectors[1]) == pytest.approx(hamming_to_cosine(h), abs=1e-6)


def test_hash_vectors_values_and_validation():
    bits = np.array([[True, False, True], [False, False, False]])
    vectors = hash_vectors(bits)
    assert vectors.dtype == np.float32 and vectors.shape == (2, 3)
    np.testing.assert_array_equal(vectors, [[1, -1, 1], [-1, -1, -1]])
    np.testing.assert_array_equal(hash_vectors(bits.astype(np.uint8)), vectors)  # 0/1 integers
    with pytest.raises(ValueError, match="0 and 1"):
        hash_vectors(np.array([[0, 2]]))
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        hash_vectors(np.array([True, False]))


@pytest.mark.parametrize("method", HASH_METHODS)
def test_exact_copy_is_at_distance_zero(photos, tmp_path, method):
    original = save(photos["coffee"], tmp_path / "coffee.png")
    shutil.copyfile(original, tmp_path / "coffee_copy.png")
    save(photos["rocket"], tmp_path / "rocket.png")
    emb = hash_manifest(_manifest(tmp_path), method=method, hash_size=8)
    vec = _by_id(emb)
    assert _distance(vec["coffee.png"], vec["coffee_copy.png"]) == pytest.approx(0.0, abs=1e-6)
    assert _distance(vec["coffee.png"], vec["rocket.png"]) > NEAR


def test_phash_copies_within_10_bits(dataset, photos):
    root, manifest = dataset
    vec = _by_id(hash_manifest(manifest, method="phash", hash_size=8))
    for name in photos:
        for copy in (f"{name}_q40.jpg", f"{name}_half.png"):
            assert _distance(vec[f"{name}.png"], vec[copy]) <= NEAR, (name, copy)


@pytest.mark.parametrize("method", ["phash", "dhash"])
def test_distinct_photos_more_than_10_bits_apart(dataset, photos, method):
    root, manifest = dataset
    vec = _by_id(hash_manifest(manifest, method=method, hash_size=8))
    for a, b in itertools.combinations(photos, 2):
        assert _distance(vec[f"{a}.png"], vec[f"{b}.png"]) > NEAR, (method, a, b)


@pytest.mark.parametrize("method", HASH_METHODS)
def test_bits_and_distances_match_imagehash(dataset, method):
    """Our bits are imagehash's of the image as decoded (a JPEG at the DCT scale keeping 64 px a side,
    except for whash), within 4 bits of imagehash's on the full decode, and cosine of the vectors is
    2 * (h1 - h2) / 64 for every pair."""
    from neardup.decode import open_rgb

    root, manifest = dataset
    function = {"phash": imagehash.phash, "dhash": imagehash.dhash, "ahash": imagehash.average_hash,
                "whash": imagehash.whash}[method]
    theirs = {}
    for image_id, path in zip(manifest["id"], manifest["path"]):
        theirs[image_id] = function(open_rgb(path, min_side=None if method == "whash" else 64))
        np.testing.assert_array_equal(hash_image(path, method=method, hash_size=8), theirs[image_id].hash.flatten())
        with Image.open(path) as im:
            assert function(im.convert("RGB")) - theirs[image_id] <= 4, image_id

    emb = hash_manifest(manifest, method=method, hash_size=8)
    distances = cosine_distances(emb.vectors)
    hamming = []
    for i, j in itertools.combinations(range(len(emb.ids)), 2):
        h = theirs[emb.ids[i]] - theirs[emb.ids[j]]
        hamming.append(h)
        assert distances[i, j] == pytest.approx(hamming_to_cosine(h), abs=1e-6)
    assert max(hamming) > 10  # the identity is checked on far pairs too, not only on copies


def test_broken_files_are_skipped_not_lost(photos, tmp_path):
    for name in ("astronaut", "chelsea", "coffee", "flower"):
        save(photos[name], tmp_path / f"{name}.jpg", quality=90)
    manifest = _manifest(tmp_path)
    # the files change after the fetch stage checked them
    data = (tmp_path / "chelsea.jpg").read_bytes()
    (tmp_path / "chelsea.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "flower.jpg").unlink()

    emb = hash_manifest(manifest, method="phash", hash_size=8)
    assert list(emb.ids) == ["astronaut.jpg", "coffee.jpg"]
    assert emb.vectors.shape == (2, 64)
    assert list(emb.sha256) == list(manifest.set_index("id").loc[list(emb.ids), "sha256"])
    assert list(emb.skipped.columns) == ["id", "reason"]
    reasons = dict(zip(emb.skipped["id"], emb.skipped["reason"]))
    assert set(reasons) == {"chelsea.jpg", "flower.jpg"}
    assert all(r.startswith("could not be hashed: ") for r in reasons.values())
    assert "truncated" in reasons["chelsea.jpg"]
    assert "FileNotFoundError" in reasons["flower.jpg"]
    assert len(emb.ids) + len(emb.skipped) == len(manifest)


def test_unknown_method_names_the_valid_ones(dataset):
    root, manifest = dataset
    for call in (lambda: hash_manifest(manifest, method="md5", hash_size=8),
                 lambda: hash_image(manifest["path"].iloc[0], method="md5", hash_size=8)):
        with pytest.raises(ValueError) as info:
            call()
        assert "md5" in str(info.value)
        assert all(m in str(info.value) for m in HASH_METHODS)
    with pytest.raises(ValueError, match="power of 2"):
        hash_manifest(manifest, method="whash", hash_size=6)
    with pytest.raises(ValueError, match="hash_size"):
        hash_manifest(manifest, method="phash", hash_size=1)


def test_order_dtype_shape_and_round_trip(dataset, tmp_path):
    root, manifest = dataset
    shuffled = manifest.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled["extra"] = "ignored"
    assert list(shuffled["id"]) != list(manifest["id"])

    emb = hash_manifest(shuffled[["id", "path", "sha256", "extra"]], method="dhash", hash_size=8)
    n = len(shuffled)
    assert list(emb.ids) == list(shuffled["id"])
    assert list(emb.sha256) == list(shuffled["sha256"])
    assert emb.vectors.dtype == np.float32 and emb.vectors.shape == (n, 64)
    assert set(np.unique(emb.vectors)) == {-1.0, 1.0}
    assert emb.skipped.empty
    assert np.isfinite(emb.images_per_second) and emb.images_per_second > 0
    for image_id, path, vector in zip(shuffled["id"], shuffled["path"], emb.vectors):
        np.testing.assert_array_equal(vector, hash_vectors(hash_image(path, method="dhash", hash_size=8)[None])[0])

    emb.save(tmp_path / "dhash_8.npz")
    loaded = Embeddings.load(tmp_path / "dhash_8.npz")
    np.testing.assert_array_equal(loaded.vectors, emb.vectors)
    assert list(loaded.ids) == list(emb.ids) and loaded.vectors.dtype == np.float32


def test_hash_size_sets_the_dimension(dataset):
    root, manifest = dataset
    emb = hash_manifest(manifest.head(3), method="phash", hash_size=16)
    assert emb.vectors.shape == (3, 256) and emb.vectors.dtype == np.float32
    empty = hash_manifest(manifest.head(0), method="whash", hash_size=8)
    assert empty.vectors.shape == (0, 64) and empty.vectors.dtype == np.float32
    assert len(empty.ids) == 0 and empty.skipped.empty
