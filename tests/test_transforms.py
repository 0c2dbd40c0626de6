"""Tests of neardup.transforms on a real photo crop."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from neardup.transforms import TRANSFORMS, apply_transform

EXPECTED = {
    "jpeg", "downscale", "crop", "hflip", "brightness_contrast", "rotate", "grayscale", "pad", "text",
}


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A 160 x 120 colour crop of scikit-image's astronaut photo."""
    from skimage.data import astronaut

    return Image.fromarray(astronaut()[40:160, 150:310])


def _differs(a: Image.Image, b: Image.Image) -> bool:
    return a.size != b.size or not np.array_equal(np.asarray(a), np.asarray(b))


def test_names():
    assert set(TRANSFORMS) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rgb_differs_and_deterministic(name, photo):
    out1 = apply_transform(name, photo, np.random.default_rng(7))
    out2 = apply_transform(name, photo, np.random.default_rng(7))
    assert out1.mode == "RGB"
    assert _differs(photo, out1)
    assert not _differs(out1, out2), "same seed must give the same image"
    assert min(out1.size) >= 1
    assert photo.size == (160, 120) and photo.mode == "RGB", "input must not be modified"


@pytest.mark.parametrize("name", ["jpeg", "downscale", "crop", "brightness_contrast", "rotate", "pad", "text"])
def test_seed_matters(name, photo):
    outs = [apply_transform(name, photo, np.random.default_rng(s)) for s in range(4)]
    assert any(_differs(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_any_input_mode_gives_rgb(mode, photo):
    for name in TRANSFORMS:
        assert apply_transform(name, photo.convert(mode), np.random.default_rng(0)).mode == "RGB"


def test_unknown_name_lists_valid_names(photo):
    with pytest.raises(ValueError, match="unknown transform 'jpg'.*jpeg.*downscale"):
        apply_transform("jpg", photo, np.random.default_rng(0))


def test_geometry(photo):
    w, h = photo.size
    for seed in range(10):
        rng = np.random.default_rng(seed)
        dw, dh = apply_transform("downscale", photo, rng).size
        assert 0.29 * w <= dw <= 0.71 * w and 0.29 * h <= dh <= 0.71 * h
        cw, ch = apply_transform("crop", photo, rng).size
        assert 0.79 * w <= cw <= 0.96 * w and 0.79 * h <= ch <= 0.96 * h
        pw, ph = apply_transform("pad", photo, rng).size
        assert 1.05 * w <= pw <= 1.21 * w and 1.05 * h <= ph <= 1.21 * h
        rw, rh = apply_transform("rotate", photo, rng).size
        assert 0.6 * w < rw < w and 0.6 * h < rh < h


def test_rotate_leaves_no_black_corners():
    bright = Image.fromarray(np.random.default_rng(0).integers(120, 256, (90, 140, 3), dtype=np.uint8))
    for seed in range(10):
        out = np.asarray(apply_transform("rotate", bright, np.random.default_rng(seed)))
        assert out.min() > 60, "rotation fill must be cropped away"


def test_hflip_and_grayscale_content(photo):
    rng = np.random.default_rng(0)
    assert np.array_equal(np.asarray(apply_transform("hflip", photo, rng)), np.asarray(photo)[:, ::-1])
    grey = np.asarray(apply_transform("grayscale", photo, rng))
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
