"""Tests of neardup.transforms on a real photo crop."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from neardup.transforms import EASY_TRANSFORMS, HARD_TRANSFORMS, TRANSFORMS, apply_transform

EXPECTED = {
    "jpeg", "downscale", "crop", "hflip", "brightness_contrast", "rotate", "grayscale", "pad", "text",
    "shift", "crop_hard", "zoom", "color", "resize_jpeg",
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


def test_easy_and_hard_partition():
    assert EASY_TRANSFORMS == (
        "jpeg", "downscale", "crop", "hflip", "brightness_contrast", "rotate", "grayscale", "pad", "text",
    )
    assert HARD_TRANSFORMS == ("shift", "crop_hard", "zoom", "color", "resize_jpeg")
    assert EASY_TRANSFORMS + HARD_TRANSFORMS == tuple(TRANSFORMS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rgb_differs_and_deterministic(name, photo):
    out1 = apply_transform(name, photo, np.random.default_rng(7))
    out2 = apply_transform(name, photo, np.random.default_rng(7))
    assert out1.mode == "RGB"
    assert _differs(photo, out1)
    assert not _differs(out1, out2), "same seed must give the same image"
    assert min(out1.size) >= 1
    assert photo.size == (160, 120) and photo.mode == "RGB", "input must not be modified"


@pytest.mark.parametrize("name", sorted(EXPECTED - {"hflip", "grayscale"}))
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


def test_hard_geometry(photo):
    w, h = photo.size
    for seed in range(10):
        rng = np.random.default_rng(seed)
        sw, sh = apply_transform("shift", photo, rng).size
        assert 0.92 * w - 1 <= sw <= 0.97 * w + 1 and 0.92 * h - 1 <= sh <= 0.97 * h + 1  # +-1 px rounding
        cw, ch = apply_transform("crop_hard", photo, rng).size
        assert 0.69 * w <= cw <= 0.91 * w and 0.69 * h <= ch <= 0.91 * h
        zoomed = apply_transform("zoom", photo, rng)
        assert zoomed.size == (w, h) and _differs(photo, zoomed)
        jw, jh = apply_transform("resize_jpeg", photo, rng).size
        assert 0.24 * w <= jw <= 0.51 * w and 0.24 * h <= jh <= 0.51 * h
        assert apply_transform("color", photo, rng).size == (w, h)


def test_shift_is_a_one_sided_crop(photo):
    arr = np.asarray(photo)
    corners = set()
    for seed in range(20):
        out = np.asarray(apply_transform("shift", photo, np.random.default_rng(seed)))
        dy, dx = arr.shape[0] - out.shape[0], arr.shape[1] - out.shape[1]
        matches = [(y, x) for y in (0, dy) for x in (0, dx)
                   if np.array_equal(arr[y:y + out.shape[0], x:x + out.shape[1]], out)]
        assert matches, "shift must be a crop of the input, no border or resampling"
        corners.update((y > 0, x > 0) for y, x in matches)
    assert len(corners) == 4, "all four shift directions must occur"


def test_zoom_is_centred(photo):
    # the centre pixel of a zoom stays close to the centre pixel of the input
    a = np.asarray(photo.convert("L"), dtype=float)
    for seed in range(5):
        z = np.asarray(apply_transform("zoom", photo, np.random.default_rng(seed)).convert("L"), dtype=float)
        cy, cx = a.shape[0] // 2, a.shape[1] // 2
        assert abs(z[cy - 2:cy + 3, cx - 2:cx + 3].mean() - a[cy - 2:cy + 3, cx - 2:cx + 3].mean()) < 25


def _chroma(image: Image.Image) -> float:
    """Mean (max - min) over the channels: scales by saturation x contrast factor."""
    a = np.asarray(image, dtype=float)
    return float((a.max(axis=-1) - a.min(axis=-1)).mean())


def test_color_changes_saturation(photo):
    base = _chroma(photo)
    directions = set()
    for seed in range(20):
        out = apply_transform("color", photo, np.random.default_rng(seed))
        ratio = _chroma(out) / base
        # saturation 0.5-0.8 or 1.2-1.6 times contrast 0.8-0.9 or 1.1-1.2: 0.4-0.96 or 0.96-1.92
        assert 0.38 <= ratio <= 1.95 and abs(ratio - 1.0) > 0.03, f"seed {seed}: chroma ratio {ratio:.3f}"
        directions.add(ratio > 1.0)
    assert directions == {True, False}, "both less and more saturated outputs must occur"
