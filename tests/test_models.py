"""Tests for neardup.embed.models: real EfficientNet graphs and weights, no mocks."""
import numpy as np
import pytest
from PIL import Image
from skimage import data

from neardup.contract import UserError
from neardup.embed.lite_weights import lite_weights_path
from neardup.embed.models import (MODEL_NAMES, WeightsUnavailableError, build_classifier, build_embedder, get_spec)

TIGER_CAT, TABBY, EGYPTIAN_CAT, ESPRESSO = 282, 281, 285, 967


def prep(img: np.ndarray, size: int, fraction: float) -> np.ndarray:
    """Centre-crop `fraction` of the short side, bicubic-resize to (size, size, 3) float32 in [0, 255]."""
    h, w = img.shape[:2]
    side = int(min(h, w) * fraction)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(img[top:top + side, left:left + side])
    return np.asarray(crop.resize((size, size), Image.BICUBIC), dtype=np.float32)


def batch(size: int, fraction: float, *, flip: bool = False) -> np.ndarray:
    """(3, size, size, 3): chelsea, coffee, chelsea mirrored."""
    cat = data.chelsea()
    return np.stack([prep(cat, size, fraction), prep(data.coffee(), size, fraction),
                     prep(cat[:, ::-1], size, fraction)])


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def lite0_images():
    return batch(224, get_spec("efficientnet-lite0").crop_fraction(224))


@pytest.fixture(scope="module")
def lite0_classifier():
    return build_classifier("efficientnet-lite0", size=224)


@pytest.fixture(scope="module")
def lite0_embedder():
    # the explicit-path route; the classifier fixture covers weights="imagenet"
    return build_embedder("efficientnet-lite0", size=224, weights=lite_weights_path(0), pooling="avg")


@pytest.fixture(scope="module")
def b0_random():
    return build_embedder("efficientnet-b0", size=224, weights="none", pooling="avg")


def test_specs():
    assert MODEL_NAMES[:3] == ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
    assert MODEL_NAMES[3:] == tuple(f"efficientnet-b{i}" for i in range(8))
    assert [get_spec(n).native_size for n in MODEL_NAMES] == [224, 240, 260, 224, 240, 260, 300, 380, 456, 528, 600]
    assert get_spec("efficientnet-lite1").family == "lite" and get_spec("efficientnet-b3").family == "b"
    assert get_spec("efficientnet-lite0").crop_fraction(224) == pytest.approx(0.875)
    assert get_spec("efficientnet-b0").crop_fraction(300) == 1.0
    with pytest.raises(ValueError, match="efficientnet-lite0, efficientnet-lite1.*efficientnet-b7"):
        get_spec("efficientnet-lite3")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="valid names: efficientnet-lite0"):
        build_embedder("effnet-b0", size=224, pooling="avg")
    with pytest.raises(ValueError, match="noisy-student"):
        build_embedder("efficientnet-lite0", size=224, weights="noisy-student", pooling="avg")
    with pytest.raises(ValueError, match="size"):
        build_embedder("efficientnet-lite0", size=16, pooling="avg")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_embedder("efficientnet-lite0", size=224, weights=str(tmp_path / "nope.pth"), pooling="avg")
    with pytest.raises(ValueError, match="lite models only"):
        build_classifier("efficientnet-b0", size=224)


def test_lite0_classifier_sanity(lite0_classifier, lite0_images):
    probs = lite0_classifier(lite0_images).numpy()
    assert probs.shape == (3, 1000) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    for row in (probs[0], probs[2]):  # the cat, also mirrored
        assert set(np.argsort(-row)[:2]) <= {TIGER_CAT, TABBY, EGYPTIAN_CAT}
    assert probs[1].argmax() == ESPRESSO and probs[1, ESPRESSO] > 0.8


def test_lite0_embedder(lite0_embedder, lite0_classifier, lite0_images):
    assert lite0_embedder.input_shape == (None, 224, 224, 3)
    assert lite0_embedder.output_shape == (None, 1280)
    feats = lite0_embedder(lite0_images).numpy()
    assert feats.shape == (3, 1280) and feats.dtype == np.float32
    import keras
    pooled = keras.Model(lite0_classifier.input, lite0_classifier.get_layer("avg_pool").output)(lite0_images)
    np.testing.assert_allclose(feats, pooled.numpy(), rtol=1e-5, atol=1e-5)
    assert (feats >= 0).all()  # ReLU6 before pooling
    # near-duplicate (mirror) is much closer than a different photo
    assert cosine(feats[0], feats[2]) > 0.8 > 0.4 > cosine(feats[0], feats[1])


def test_max_pooling_takes_the_largest_activation(lite0_embedder, lite0_images):
    mac = build_embedder("efficientnet-lite0", size=224, weights="imagenet", pooling="max")
    peak, mean = mac(lite0_images).numpy(), lite0_embedder(lite0_images).numpy()
    assert peak.shape == mean.shape == (3, 1280)
    assert (peak >= mean - 1e-5).all() and (peak <= 6.0 + 1e-5).all()  # max of ReLU6 maps >= their mean
    active = mean > 1e-3
    assert active.mean() > 0.3 and (peak[active] > mean[active] * 1.5).mean() > 0.9  # peaks stand out
    assert (peak[mean == 0] == 0).all()  # a map that is all zeros has a zero maximum
    with pytest.raises(ValueError, match="pooling must be one of"):
        build_embedder("efficientnet-lite0", size=224, weights="imagenet", pooling="gem")


def test_lite0_wrong_variant_file_is_rejected():
    with pytest.raises(ValueError, match="right EfficientNet-Lite variant"):
        build_embedder("efficientnet-lite0", size=224, weights=lite_weights_path(1), pooling="avg")


@pytest.mark.parametrize("name", ["efficientnet-lite1", "efficientnet-lite2"])
def test_lite1_lite2_native_size(name):
    spec = get_spec(name)
    size = spec.native_size
    images = batch(size, spec.crop_fraction(size))
    embedder = build_embedder(name, size=size, pooling="avg")
    feats = embedder(images).numpy()
    assert embedder.input_shape == (None, size, size, 3) and feats.shape == (3, 1280) and feats.dtype == np.float32
    assert cosine(feats[0], feats[2]) > cosine(feats[0], feats[1])
    probs = build_classifier(name, size=size)(images).numpy()
    assert probs[1].argmax() == ESPRESSO
    assert set(np.argsort(-probs[0])[:2]) <= {TIGER_CAT, TABBY, EGYPTIAN_CAT}


def test_b0_random_weights(b0_random):
    x = batch(224, 1.0)[:1]
    out = b0_random(x).numpy()
    assert b0_random.input_shape == (None, 224, 224, 3)
    assert out.shape == (1, 1280) and out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras saving, TF + numpy 2
@pytest.mark.parametrize("fmt", ["keras3", "legacy-h5"])
def test_b0_weights_from_path_round_trip(b0_random, tmp_path, fmt):
    backbone = b0_random.get_layer("efficientnet-b0")
    if fmt == "keras3":
        path = tmp_path / "b0.weights.h5"
        backbone.save_weights(path)
    else:  # the layout of the efficientnet release files (Keras 2 HDF5), as Keras 3 writes it
        h5py = pytest.importorskip("h5py")
        legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
        path = tmp_path / "b0_notop.h5"
        with h5py.File(path, "w") as f:
            legacy.save_weights_to_hdf5_group(f, backbone)
    x = batch(224, 1.0)[:2]
    reloaded = build_embedder("efficientnet-b0", size=224, weights=str(path), pooling="avg")
    np.testing.assert_array_equal(reloaded(x).numpy(), b0_random(x).numpy())


@pytest.mark.parametrize("weights, fname", [
    ("imagenet", "efficientnet-b0_weights_tf_dim_ordering_tf_kernels_autoaugment_notop.h5"),
    ("noisy-student", "efficientnet-b0_noisy-student_notop.h5")])
def test_b0_pretrained_weights_missing(monkeypatch, tmp_path, weights, fname):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    expected = tmp_path / "models" / fname
    with pytest.raises(WeightsUnavailableError) as info:
        build_embedder("efficientnet-b0", size=224, weights=weights, pooling="avg")
    assert isinstance(info.value, UserError)  # a stage ends with this message, not a traceback
    assert str(expected) in str(info.value) and "embed.weights" in str(info.value)
    expected.parent.mkdir()
    expected.write_bytes(b"not really weights")
    with pytest.raises(WeightsUnavailableError, match="sha256"):
        build_embedder("efficientnet-b0", size=224, weights=weights, pooling="avg")
