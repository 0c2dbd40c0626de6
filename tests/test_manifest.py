"""Tests of neardup.images: decoding checks, hashing and scanning."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from neardup.cache import sha256_file
from neardup.images import inspect_image, scan_files
from neardup.contract import MANIFEST_COLUMNS, SKIPPED_COLUMNS


def _rgb(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _truncated_jpeg(path: Path) -> Path:
    _rgb(120, 90).save(path, "JPEG", quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "name, mode, fmt",
    [
        ("a.jpg", "RGB", "JPEG"),
        ("b.png", "RGB", "PNG"),
        ("c.png", "L", "PNG"),
        ("d.png", "RGBA", "PNG"),
        ("e.gif", "P", "GIF"),
        ("f.bmp", "RGB", "BMP"),
        ("g.tiff", "RGB", "TIFF"),
    ],
)
def test_inspect_good_images(tmp_path, name, mode, fmt):
    path = tmp_path / name
    _rgb(64, 48).convert(mode).save(path, fmt)
    info, reason = inspect_image(path)
    assert reason is None
    with Image.open(path) as im:
        rgb = im.convert("RGB").tobytes()
    pixels = hashlib.sha256(b"RGB 64x48\n" + rgb).hexdigest()
    assert info == {"width": 64, "height": 48, "format": fmt, "frames": 1, "orientation": 1, "pixel_sha256": pixels}


def test_inspect_truncated_jpeg(tmp_path):
    info, reason = inspect_image(_truncated_jpeg(tmp_path / "t.jpg"))
    assert info is None
    assert reason.startswith("truncated image: ")


def test_inspect_respects_and_restores_truncated_flag(tmp_path):
    path = _truncated_jpeg(tmp_path / "t.jpg")
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        assert inspect_image(path)[0] is None
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_inspect_non_images(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert inspect_image(tmp_path / "notes.txt") == (None, "not an image: cannot identify image file")
    assert inspect_image(tmp_path / "empty.jpg") == (None, "empty file")
    info, reason = inspect_image(tmp_path / "missing.jpg")
    assert info is None and reason.startswith("unreadable: ")


def test_sha256_file(tmp_path):
    path = tmp_path / "x.bin"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "root"
    for rel, seed in [("z.jpg", 1), ("a/x.jpg", 2), ("a/b/y.png", 3), ("c/x.jpg", 4), ("c/w.jpg", 5)]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _rgb(40 + seed, 30, seed).save(root / rel)
    _truncated_jpeg(root / "a" / "bad.jpg")
    (root / "readme.txt").write_text("not an image")
    return root


def test_scan_files(tree):
    paths = list(tree.rglob("*"))
    paths = [p for p in paths if p.is_file()][::-1]  # unsorted on purpose
    labels = {"z.jpg": "1", "a/b/y.png": "2", "x.jpg": "9", "w.jpg": "3", "a/x.jpg": "4"}
    res = scan_files(paths, root=tree, set_name="train", labels=labels, label_names={"1": "one", "4": "four"})
    m = res.manifest
    assert list(m.columns) == MANIFEST_COLUMNS and list(res.skipped.columns) == SKIPPED_COLUMNS
    assert m["id"].tolist() == ["a/b/y.png", "a/x.jpg", "c/w.jpg", "c/x.jpg", "z.jpg"]
    got = dict(zip(m["id"], m["label"]))
    # by id; by unambiguous bare name; 'x.jpg' is ambiguous (a/x.jpg, c/x.jpg) -> c/x.jpg unlabelled
    assert got == {"a/b/y.png": "2", "a/x.jpg": "4", "c/w.jpg": "3", "c/x.jpg": "", "z.jpg": "1"}
    assert dict(zip(m["id"], m["label_name"]))["z.jpg"] == "one"
    assert dict(zip(m["id"], m["label_name"]))["a/x.jpg"] == "four"
    assert dict(zip(m["id"], m["label_name"]))["c/w.jpg"] == "3"
    assert (m["set"] == "train").all()
    assert dict(zip(m["id"], m["format"]))["a/b/y.png"] == "PNG"
    assert m["width"].dtype == np.int64
    for _, row in m.iterrows():
        assert row["sha256"] == hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest()
        assert Path(row["path"]) == tree / row["id"]
    skipped = dict(zip(res.skipped["path"], res.skipped["reason"]))
    assert set(skipped) == {str(tree / "a" / "bad.jpg"), str(tree / "readme.txt")}
    assert skipped[str(tree / "a" / "bad.jpg")].startswith("truncated image")
    assert res.truth is None


def test_scan_files_relative_paths_stay_relative(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    res = scan_files([Path("root/z.jpg"), Path("root/a/x.jpg")], root=Path("root"), set_name="s")
    assert res.manifest["path"].tolist() == ["root/a/x.jpg", "root/z.jpg"]
    assert res.manifest["label"].tolist() == ["", ""]
    assert res.skipped.empty and list(res.skipped.columns) == SKIPPED_COLUMNS


def test_scan_files_rejects_path_outside_root(tree, tmp_path):
    other = tmp_path / "elsewhere.jpg"
    _rgb().save(other)
    with pytest.raises(ValueError, match="not under the dataset root"):
        scan_files([other], root=tree, set_name="s")


def test_scan_files_empty(tree):
    res = scan_files([], root=tree, set_name="s")
    assert res.manifest.empty and list(res.manifest.columns) == MANIFEST_COLUMNS
