"""The embedding loop on the real Lite0 ImageNet model: ids stay with vectors, formats, failures, and
the two runtimes (TFLite/XNNPACK and Keras) giving the same vectors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, save
from neardup.contract import Embeddings
from neardup.embed import Embedder
from neardup.embed.pixels import crop_box, load_pixels
from neardup.images import scan_files


@pytest.fixture(scope="module")
def embedder(model_cache):
    return Embedder("efficientnet-lite0", size=224, weights="imagenet", batch_size=3, pooling="avg",
                    cache_dir=model_cache)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("imgs")
    for name, array in photos.items():
        save(array, root / f"{name}.jpg", quality=92)
    save(photos["coffee"], root / "formats" / "coffee.png")
    save(photos["coffee"], root / "formats" / "coffee.tiff")
    save(photos["coffee"], root / "formats" / "coffee.ppm")
    save(np.asarray(Image.fromarray(photos["china"]).convert("L")), root / "grey.png")
    return root


def manifest_of(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return scan_files(files, root=root, set_name="t").manifest


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_ids_stay_with_vectors_across_batches(embedder, folder):
    manifest = manifest_of(folder)
    emb = embedder.embed_manifest(manifest)
    assert list(emb.ids) == list(manifest["id"]) and len(emb.skipped) == 0
    assert emb.vectors.shape == (len(manifest), 1280) and emb.vectors.dtype == np.float32
    # Each vector equals the vector of that image embedded alone (batches of 3 mix 10 images).
    for k in (0, 4, len(manifest) - 1):
        alone = embedder.embed_manifest(manifest.iloc[[k]])
        np.testing.assert_allclose(alone.vectors[0], emb.vectors[k], rtol=1e-4, atol=1e-4)
    # Deterministic.
    np.testing.assert_array_equal(embedder.embed_manifest(manifest).vectors, emb.vectors)


def test_formats_decode_to_the_same_pixels(embedder, folder):
    manifest = manifest_of(folder / "formats")
    assert set(manifest["format"]) == {"PNG", "TIFF", "PPM"}
    emb = embedder.embed_manifest(manifest)
    assert len(emb.ids) == 3
    np.testing.assert_allclose(emb.vectors[0], emb.vectors[1], atol=1e-4)
    np.testing.assert_allclose(emb.vectors[0], emb.vectors[2], atol=1e-4)


def test_duplicates_are_closer_than_different_photos(embedder, folder, photos, tmp_path):
    copy = Image.fromarray(photos["chelsea"]).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    copy = copy.resize((copy.width // 2, copy.height // 2))
    copy.save(tmp_path / "chelsea_copy.jpg", quality=40)
    manifest = pd.concat([manifest_of(folder), manifest_of(tmp_path)], ignore_index=True)
    emb = embedder.embed_manifest(manifest)
    vec = dict(zip(emb.ids, emb.vectors))
    same = cosine(vec["chelsea.jpg"], vec["chelsea_copy.jpg"])
    others = [cosine(vec["chelsea_copy.jpg"], vec[k]) for k in ("astronaut.jpg", "coffee.jpg", "rocket.jpg", "china.jpg")]
    assert same > 0.8 > max(others) + 0.2, (same, others)


def test_broken_file_is_skipped_not_lost(embedder, folder, tmp_path):
    manifest = manifest_of(folder).head(4).copy()
    broken = tmp_path / "was_fine.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg any more")
    manifest.loc[1, "path"] = str(broken)  # the file changed after fetch
    emb = embedder.embed_manifest(manifest)
    assert set(emb.ids) | set(emb.skipped["id"]) == set(manifest["id"])
    assert list(emb.skipped["id"]) == [manifest.loc[1, "id"]]
    assert "decode" in emb.skipped["reason"][0]


def test_dct_scaled_jpeg_decode_keeps_the_pixels(embedder, photos, tmp_path):
    """A 2048 px JPEG decoded at 1/4 and resized by OpenCV's bicubic against the full decode resized by
    Pillow's antialiased bicubic: a few grey levels apart, and vectors at a cosine over 0.98 (0.989 on
    this photo; benchmarks/input_pipeline.py measures what the difference costs: nothing in AP)."""
    big = Image.fromarray(photos["astronaut"]).resize((2048, 1536), Image.Resampling.BICUBIC)
    big.save(tmp_path / "big.jpg", quality=95)
    with Image.open(tmp_path / "big.jpg") as im:  # what the JPEG decoder does: 1/4 of each side is enough
        im.draft(None, (256, 256))
        assert im.size == (512, 384)
    scaled = load_pixels(str(tmp_path / "big.jpg"), size=224, crop_fraction=224 / 256)
    with Image.open(tmp_path / "big.jpg") as im:  # the full decode, then the same crop and resize
        full = np.asarray(im.convert("RGB").resize((224, 224), Image.Resampling.BICUBIC,
                                                   box=crop_box(2048, 1536, 224 / 256)))
    assert scaled.shape == full.shape == (224, 224, 3) and scaled.dtype == np.uint8
    assert np.abs(scaled.astype(float) - full).mean() < 3
    assert cosine(*embedder.infer(np.stack([scaled, full]))) > 0.98


def test_downscaling_filters_out_detail_finer_than_the_model_input(tmp_path):
    """A PNG (no DCT scaling) of one-pixel stripes, 4.5 times the output: the whole-factor box filter
    leaves a flat grey, as an antialiased resize does; OpenCV's bicubic on its own would alias it."""
    stripes = np.zeros((1008, 1008, 3), np.uint8)
    stripes[:, ::2] = 255
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    pixels = load_pixels(str(tmp_path / "stripes.png"), size=224, crop_fraction=1.0)
    reference = np.asarray(Image.fromarray(stripes).resize((224, 224), Image.Resampling.BICUBIC))
    aliased = cv2.resize(stripes, (224, 224), interpolation=cv2.INTER_CUBIC)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8 and pixels.flags.c_contiguous
    assert pixels.std() < 2 and abs(pixels.mean() - reference.mean()) < 2
    assert aliased.std() > 30  # what the box filter is there for


def test_enlarging_is_pillows_bicubic_and_an_exact_fit_is_kept(tmp_path, photos):
    """Images smaller than the input (cifar's 32 px at 96) are enlarged exactly as before issue 28;
    a crop of exactly the input's side is not resampled at all."""
    small = np.asarray(Image.fromarray(photos["coffee"]).resize((40, 32)))
    Image.fromarray(small).save(tmp_path / "small.png")
    enlarged = load_pixels(str(tmp_path / "small.png"), size=96, crop_fraction=0.75)
    assert np.array_equal(enlarged, np.asarray(Image.fromarray(small).resize(
        (96, 96), Image.Resampling.BICUBIC, box=crop_box(40, 32, 0.75))))
    exact = np.asarray(Image.fromarray(photos["coffee"]).resize((80, 64)))
    Image.fromarray(exact).save(tmp_path / "exact.png")
    assert np.array_equal(load_pixels(str(tmp_path / "exact.png"), size=64, crop_fraction=1.0), exact[:, 8:72])


def test_runtimes_give_the_same_vectors(folder, model_cache, caplog):
    """TFLite/XNNPACK against the Keras model, same weights, same pixels: min cosine >= 0.9999."""
    manifest = manifest_of(folder)
    kwargs = dict(size=224, weights="imagenet", batch_size=4, pooling="max", cache_dir=model_cache)
    with caplog.at_level("INFO"):
        lite = Embedder("efficientnet-lite0", runtime="auto", **kwargs)  # no GPU here: auto is tflite
    assert lite.runtime == "tflite" and "TFLite/XNNPACK" in caplog.text
    keras = Embedder("efficientnet-lite0", runtime="keras", **kwargs)
    a, b = lite.embed_manifest(manifest), keras.embed_manifest(manifest)
    assert list(a.ids) == list(b.ids) == list(manifest["id"]) and a.vectors.shape == b.vectors.shape
    cos = (a.vectors * b.vectors).sum(1) / np.linalg.norm(a.vectors, axis=1) / np.linalg.norm(b.vectors, axis=1)
    assert cos.min() >= 0.9999, cos.min()


def test_converted_model_is_cached_and_verified(tmp_path, caplog):
    kwargs = dict(size=64, weights="imagenet", batch_size=2, pooling="avg", runtime="tflite", cache_dir=str(tmp_path))
    with caplog.at_level("INFO"):
        first = Embedder("efficientnet-lite0", **kwargs)
    assert "converted to TFLite" in caplog.text
    stored = sorted((tmp_path / "tflite").glob("*.tflite"))
    assert len(stored) == 1 and stored[0].with_suffix(".json").is_file()
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    caplog.clear()
    with caplog.at_level("INFO"):
        again = Embedder("efficientnet-lite0", **kwargs)
    assert "TFLite model from" in caplog.text and "converted to TFLite" not in caplog.text
    np.testing.assert_array_equal(again.infer(x), first.infer(x))
    # other settings never reuse it: another pooling is another file
    Embedder("efficientnet-lite0", **{**kwargs, "pooling": "max"})
    assert len(list((tmp_path / "tflite").glob("*.tflite"))) == 2
    # a changed file is not trusted: deleted with a warning naming it, converted again, same vectors
    data = bytearray(stored[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored[0].write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level("INFO"):
        mended = Embedder("efficientnet-lite0", **kwargs)
    assert f"cached TFLite model {stored[0]} fails its checksum" in caplog.text and "converted to TFLite" in caplog.text
    np.testing.assert_array_equal(mended.infer(x), first.infer(x))


def test_save_load_round_trip_without_pickle(embedder, folder, tmp_path):
    emb = embedder.embed_manifest(manifest_of(folder).head(2))
    emb.save(tmp_path / "e.npz")
    back = Embeddings.load(tmp_path / "e.npz")
    np.testing.assert_array_equal(back.vectors, emb.vectors)
    assert list(back.ids) == list(emb.ids) and back.ids.dtype.kind == "U"
    with np.load(tmp_path / "e.npz") as z:  # allow_pickle defaults to False: loads fine
        assert z["vectors"].shape == (2, 1280)
    assert back.input_size == embedder.size and list(back.sha256) == list(emb.sha256)
    # the measured rate lives in memory only: outputs hold no timings, so same inputs give the same file
    assert emb.images_per_second > 0 and np.isnan(back.images_per_second)
    with np.load(tmp_path / "e.npz") as z:
        assert "images_per_second" not in z.files
    broken = Embeddings(ids=emb.ids, sha256=emb.sha256, vectors=emb.vectors, input_size=emb.input_size,
                        skipped=pd.DataFrame({"id": ["bad.jpg"], "reason": ["could not be decoded for embedding"]}))
    broken.save(tmp_path / "s.npz")
    assert Embeddings.load(tmp_path / "s.npz").skipped.to_dict("list") == broken.skipped.to_dict("list")


def test_rows_for_follows_the_given_ids_and_zero_fills(embedder, folder):
    emb = embedder.embed_manifest(manifest_of(folder).head(3))
    ids = [emb.ids[2], "not-there.jpg", emb.ids[0]]
    rows = emb.rows_for(ids)
    np.testing.assert_array_equal(rows[0], emb.vectors[2])
    np.testing.assert_array_equal(rows[2], emb.vectors[0])
    assert not rows[1].any()


def test_auto_size_fits_the_images(folder, model_cache):
    from neardup.embed.models import get_spec

    lite0, lite2 = get_spec("efficientnet-lite0"), get_spec("efficientnet-lite2")
    assert lite0.auto_size([32] * 5, [32] * 5) == 96  # CIFAR: 3x, not 7x
    assert lite0.auto_size([10], [10]) == 64
    assert lite0.auto_size([800, 800], [600, 600]) == 224 and lite2.auto_size([800], [600]) == 260
    assert lite0.auto_size([40, 40, 300], [40, 40, 300]) == 128  # the median image decides
    manifest = manifest_of(folder)
    embedder = Embedder("efficientnet-lite0", size="auto", weights="imagenet", batch_size=4, pooling="avg",
                        manifest=manifest.assign(width=54, height=64), cache_dir=model_cache)
    assert embedder.size == 160 and embedder.embed_manifest(manifest.head(1)).input_size == 160
    with pytest.raises(ValueError, match="manifest"):
        Embedder("efficientnet-lite0", size="auto", weights="imagenet", batch_size=4, pooling="avg")


# Run in a child process: splitting the CPU into logical devices must happen before TensorFlow
# starts. The two logical CPUs stand in for two GPUs: only device discovery is redirected
# (list_logical_devices("GPU") answers with them); the MirroredStrategy, the model replicas and the
# split batches are the real ones detect_strategy and Embedder use on a multi-GPU machine.
MIRRORED_SCRIPT = r"""
import json, logging, sys
import cv2
import numpy as np
import tensorflow as tf

cpu, = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="LOG %(message)s")

from neardup.embed import Embedder, describe_strategy, detect_strategy
from neardup.embed.pixels import load_pixels
from neardup.images import scan_files
from pathlib import Path

out = {}
single = detect_strategy()  # no GPU seen: the default strategy, one replica on the CPU
out["cpu"] = [type(single).__name__, single.num_replicas_in_sync, describe_strategy(single)]

real = tf.config.list_logical_devices
tf.config.list_logical_devices = lambda kind=None: real("CPU") if kind == "GPU" else real(kind)
mirrored = detect_strategy()
out["gpu"] = [type(mirrored).__name__, mirrored.num_replicas_in_sync,
              [d.split("device:")[-1] for d in mirrored.extended.worker_devices]]

root = Path(sys.argv[1])
manifest = scan_files(sorted(root.glob("*.jpg")), root=root, set_name="t").manifest
kwargs = dict(size=64, weights="imagenet", batch_size=2, pooling="avg")
one = Embedder("efficientnet-lite0", strategy=single, **kwargs)
two = Embedder("efficientnet-lite0", strategy=mirrored, **kwargs)
a, b = one.embed_manifest(manifest), two.embed_manifest(manifest)
out["global_batch"] = [one.global_batch, two.global_batch]
out["ids"] = [list(a.ids), list(b.ids), list(manifest["id"])]
out["max_diff"] = float(np.abs(a.vectors - b.vectors).max())
images = np.stack([load_pixels(p, size=64, crop_fraction=two.crop_fraction)
                   for p in manifest["path"][:3]])  # one short global batch
out["runtimes"] = [one.runtime, two.runtime]
out["infer_diff"] = float(np.abs(two.infer(images) - one.infer(images)).max())
out["infer_rows"] = int(two.infer(images).shape[0])
print(json.dumps(out))
"""


def test_mirrored_strategy_splits_batches_over_replicas(photos, tmp_path):
    for i, (name, array) in enumerate(photos.items()):  # 6 images + 1: batches of 4 leave a short one
        save(array, tmp_path / f"{i}_{name}.jpg", quality=90)
    save(photos["coffee"][::2, ::2], tmp_path / "9_small.jpg", quality=90)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["cpu"] == ["_DefaultDistributionStrategy", 1, "CPU"]
    assert out["gpu"] == ["MirroredStrategy", 2, ["CPU:0", "CPU:1"]]
    assert out["global_batch"] == [2, 4]  # embed.batch_size is per replica
    ids_one, ids_two, ids_manifest = out["ids"]
    assert ids_one == ids_two == ids_manifest and len(ids_manifest) == 7
    assert out["max_diff"] < 1e-3  # the same vectors, each with its own id, whatever the replica
    assert out["infer_rows"] == 3 and out["infer_diff"] < 1e-3
    assert out["runtimes"] == ["keras", "keras"]  # a strategy given: the Keras runtime
    logs = [line.split(";")[0] for line in proc.stderr.splitlines() if line.startswith("LOG embedding ")]
    assert logs == ["LOG embedding efficientnet-lite0@64 on CPU with Keras, batch 2 per replica, 2 global",
                    "LOG embedding efficientnet-lite0@64 on 2 replicas: CPU:0, CPU:1 with Keras, batch 2 per replica, 4 global"], logs
