"""Bad input at fetch: every directory entry accounted for, nothing crashes raw, nothing degrades silently.

A corpus of what real image folders hold (broken files, special files, every kind of symlink,
rotated phone photos, animations, decompression bombs, odd names, conflicting labels) is scanned;
each entry must end in the manifest or in the skipped list with the expected reason. Bad
configurations must end the fetch stage with one error line and exit code 2. A real ``dvc repro
fetch`` must neither hang nor abort on the entries DVC cannot hash.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image, ImageFile, ImageOps, PngImagePlugin

from conftest import REPO, copy_pipeline, tf_example
from neardup.contract import MANIFEST_COLUMNS, SKIPPED_COLUMNS, write_fetch_result
from neardup.decode import open_rgb, pixel_sha256
from neardup.fetch.folder import load_labels_csv, scan_folder, walk_folder
from neardup.fetch.guard import BEGIN, END, guard_input, ignore_pattern
from neardup.images import inspect_image

IS_ROOT = os.geteuid() == 0
CAP = 10_000_000  # fetch.max_pixels of the corpus scan
TIMEOUT = 120  # seconds for any subprocess: a hang fails the test instead of blocking it


# ---------------------------------------------------------------- building blocks


def _array(seed: int, w: int = 60, h: int = 40) -> np.ndarray:
    """A smooth random RGB image (compresses like a photo, survives JPEG well)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def _jpeg(seed: int, w: int = 60, h: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_array(seed, w, h)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def png_1bit(width: int, height: int) -> bytes:
    """A valid black 1-bit greyscale PNG of any size, a few kB per 100 M pixels on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def entry_count(root: Path) -> int:
    """Directory entries under ``root`` counted independently of neardup: every non-folder entry
    (files, symlinks to anything but a folder, FIFOs, sockets, devices), every symlink to a folder and
    every folder that cannot be entered."""
    unreadable = []
    count = 0
    for _, dirs, files in os.walk(root, followlinks=False, onerror=unreadable.append):
        count += len(files)
        count += sum(1 for d in dirs if os.path.islink(os.path.join(_, d)))
    return count + len(unreadable)


# ---------------------------------------------------------------- the corpus


@pytest.fixture
def corpus(tmp_path, photos) -> dict:
    """A dataset folder ``input/images`` holding every case below, a labels CSV beside it, and what
    fetch must do with each entry (None: in the manifest; else the start of the skip reason)."""
    base = tmp_path / "input"
    root = base / "images"
    (root / "nested" / "deeper").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    expect: dict[str, str | None] = {}

    def image(name: str, data: bytes, outcome: str | None = None) -> Path:
        (root / name).write_bytes(data)
        expect[name] = outcome
        return root / name

    good = _jpeg(1)
    image("good.jpg", good)
    Image.fromarray(_array(2)).save(root / "good.png")
    expect["good.png"] = None
    Image.fromarray(_array(2)).save(root / "same_pixels.png", compress_level=1)  # other bytes, same pixels
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "metadata only")
    Image.fromarray(_array(2)).save(root / "same_pixels_meta.png", pnginfo=info)
    expect["same_pixels.png"] = expect["same_pixels_meta.png"] = None
    Image.fromarray(_array(3)).save(root / "conflict.png")
    expect["conflict.png"] = None
    image("truncated.jpg", good[: len(good) // 2], "truncated image")
    image("empty.jpg", b"", "empty file")
    image("text.jpg", b"this is a text file, not a JPEG\n", "not an image")
    os.mkfifo(root / "fifo.jpg")
    expect["fifo.jpg"] = "special file (FIFO): not an image"
    here = os.getcwd()
    try:  # a socket path must be short: bind it by its relative name
        os.chdir(root)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("socket.jpg")
        expect["socket.jpg"] = "special file (socket): not an image"
    except OSError:
        pass
    finally:
        os.chdir(here)
    os.symlink("/nonexistent/neardup/x.jpg", root / "dangling.jpg")
    expect["dangling.jpg"] = "dangling symlink"
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    expect["loop_a.jpg"] = expect["loop_b.jpg"] = "symlink loop"
    os.symlink("good.png", root / "link_inside.png")
    expect["link_inside.png"] = None  # followed (fetch.symlinks: inside): same content as good.png
    (outside / "out.jpg").write_bytes(_jpeg(4))
    os.symlink(outside / "out.jpg", root / "link_outside.jpg")
    expect["link_outside.jpg"] = "symlink outside the input folder: not followed"
    os.symlink("fifo.jpg", root / "link_to_fifo.jpg")
    expect["link_to_fifo.jpg"] = "symlink to a special file (FIFO): not an image"
    os.symlink("/dev/zero", root / "link_to_zero.jpg")  # a device that never ends: DVC would read for ever
    expect["link_to_zero.jpg"] = "symlink to a special file (character device): not an image"
    os.symlink(outside, root / "linked_folder")
    expect["linked_folder"] = "symlink to a folder: not followed"
    os.symlink("nested", root / "linked_inner_folder")
    expect["linked_inner_folder"] = "symlink to a folder: not followed"
    if not IS_ROOT:  # root reads these anyway (see test_unreadable_entries_without_root_privileges)
        (root / "locked").mkdir()
        (root / "locked" / "hidden_inside.jpg").write_bytes(_jpeg(5))
        (root / "locked").chmod(0)
        expect["locked"] = "unreadable folder: permission denied"
        image("unreadable.jpg", _jpeg(6)).chmod(0)
        expect["unreadable.jpg"] = "unreadable: permission denied"

    # a phone photo stored sideways with EXIF orientation 6, and its upright copy (lossless, so equal)
    upright = Image.fromarray(_array(7, 60, 40))
    upright.save(root / "upright.png")
    upright.transpose(Image.Transpose.ROTATE_90).save(root / "rotated.png", exif=_exif(6))
    photo = Image.fromarray(photos["astronaut"]).resize((96, 64))
    photo.transpose(Image.Transpose.ROTATE_90).save(root / "rotated_photo.jpg", quality=95, exif=_exif(6))
    photo.save(root / "upright_photo.jpg", quality=95)
    expect.update({"upright.png": None, "rotated.png": None, "rotated_photo.jpg": None, "upright_photo.jpg": None})

    frames = [Image.fromarray(_array(10 + k, 32, 24)).convert("P") for k in range(3)]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    pages = [Image.fromarray(_array(20 + k, 32, 24)) for k in range(2)]
    pages[0].save(root / "multipage.tiff", save_all=True, append_images=pages[1:])
    expect["animated.gif"] = expect["multipage.tiff"] = None
    image("huge.png", png_1bit(20_000, 20_000),
          f"too large: 20000 x 20000 = 400000000 pixels > fetch.max_pixels ({CAP})")

    for k, name in enumerate(["with space.jpg", "ünïcödé.jpg", "$x$.jpg", "=SUM(A1).jpg", "new\nline.jpg",
                              ".hidden.jpg", "nested/deeper/img.jpg", "nested/x.jpg"]):
        image(name, _jpeg(30 + k))
    (Path(os.fsdecode(os.fsencode(root) + b"/\xff.jpg"))).write_bytes(_jpeg(40))
    expect["\\xff.jpg"] = "file name is not valid UTF-8"  # as skipped.csv shows it

    labels = base / "labels.csv"
    labels.write_text("image_id,label\ngood.jpg,0\ngood.jpg,0\nconflict.png,3\nconflict.png,0\n"
                      "nested/deeper/img.jpg,1\n")
    return {"root": root, "labels": labels, "expect": expect, "outside": outside}


def test_every_entry_is_accounted_for(corpus, caplog):
    root, expect = corpus["root"], corpus["expect"]
    with caplog.at_level(logging.INFO):
        res = scan_folder(root, labels_csv=corpus["labels"], set_name="train", max_pixels=CAP, symlinks="inside")
    m, skipped = res.manifest, res.skipped
    assert list(m.columns) == MANIFEST_COLUMNS and list(skipped.columns) == SKIPPED_COLUMNS

    # as many rows as directory entries, counted independently; every entry where it should be
    assert len(expect) == entry_count(root)
    assert len(m) + len(skipped) == entry_count(root)
    got = {os.path.relpath(p, root): None for p in m["path"]}
    got.update({os.path.relpath(p, root): r for p, r in zip(skipped["path"], skipped["reason"])})
    assert set(got) == set(expect)
    for name, outcome in expect.items():
        if outcome is None:
            assert got[name] is None, (name, got[name])
        else:
            assert got[name] is not None and got[name].startswith(outcome), (name, got[name], outcome)
    assert m["id"].is_unique and m["id"].tolist() == sorted(m["id"])

    rows = m.set_index("id")
    # same decoded pixels, other bytes: same pixel_sha256; a followed inside symlink is its target
    assert rows.loc["same_pixels.png", "sha256"] != rows.loc["good.png", "sha256"]
    assert rows.loc["same_pixels.png", "pixel_sha256"] == rows.loc["good.png", "pixel_sha256"]
    assert rows.loc["same_pixels_meta.png", "pixel_sha256"] == rows.loc["good.png", "pixel_sha256"]
    assert rows.loc["link_inside.png", "sha256"] == rows.loc["good.png", "sha256"]
    assert rows["pixel_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    # EXIF rotation applied: the sideways-stored file is upright, with the upright copy's pixels and size
    assert rows.loc["rotated.png", "orientation"] == 6 and rows.loc["upright.png", "orientation"] == 1
    assert rows.loc["rotated.png", "pixel_sha256"] == rows.loc["upright.png", "pixel_sha256"]
    assert (rows.loc["rotated_photo.jpg", ["width", "height"]] == [96, 64]).all()
    # several frames: said per image, the first one used
    assert rows.loc["animated.gif", "frames"] == 3 and rows.loc["multipage.tiff", "frames"] == 2
    assert (rows.drop(["animated.gif", "multipage.tiff"])["frames"] == 1).all()
    # labels: the conflicting repeated id keeps both labels, visibly; identical repeats are fine
    assert rows.loc["conflict.png", "label"] == "0|3" and rows.loc["good.jpg", "label"] == "0"
    assert rows.loc["nested/deeper/img.jpg", "label"] == "1"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("1 image ids different labels" in w and "conflict.png: 0|3" in w for w in warnings), warnings

    # the tables are written and read back (odd names, '=' cells, a newline in a name)
    write_fetch_result(res, corpus["root"].parent / "out")
    back = pd.read_csv(corpus["root"].parent / "out" / "manifest.csv", dtype=str, keep_default_na=False)
    assert len(back) == len(m) and "new\nline.jpg" in set(back["id"])
    assert len(pd.read_csv(corpus["root"].parent / "out" / "skipped.csv")) == len(skipped)


def test_symlink_policies(corpus):
    root = corpus["root"]
    reasons = {e.path.name: e.reason for e in walk_folder(root, symlinks="none")}
    assert reasons["link_inside.png"] == "symlink: not followed (fetch.symlinks: none)"
    reasons = {e.path.name: e.reason for e in walk_folder(root, symlinks="all")}
    assert reasons["link_inside.png"] is None and reasons["link_outside.jpg"] is None
    assert reasons["linked_folder"].startswith("symlink to a folder")  # never followed
    assert reasons["dangling.jpg"].startswith("dangling symlink")


def test_unreadable_entries_without_root_privileges(tmp_path):
    """chmod 000 folder and file: as an ordinary user they cannot be read. As root, the walk runs in a
    child process without the capabilities that let root read anything (setpriv)."""
    root = tmp_path / "images"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "inside.jpg").write_bytes(_jpeg(1))
    (root / "ok.jpg").write_bytes(_jpeg(2))
    (root / "closed.jpg").write_bytes(_jpeg(3))
    (root / "closed.jpg").chmod(0)
    (root / "locked").chmod(0)
    script = ("import json, sys; from neardup.fetch.folder import walk_folder; "
              "print(json.dumps({e.path.name: [e.reason, e.dvc_unsafe] for e in walk_folder(sys.argv[1], symlinks=\"inside\")}))")
    cmd = [sys.executable, "-c", script, str(root)]
    if IS_ROOT:
        setpriv = shutil.which("setpriv")
        if not setpriv:
            pytest.skip("running as root without setpriv: root reads chmod 000 entries")
        cmd = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    (root / "locked").chmod(0o755)
    if IS_ROOT and proc.returncode and "setpriv" in proc.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found == {"closed.jpg": ["unreadable: permission denied", True],
                     "locked": ["unreadable folder: permission denied", True], "ok.jpg": [None, False]}


# ---------------------------------------------------------------- one decoder for every stage


def test_every_stage_sees_the_same_upright_pixels(tmp_path, photos):
    from neardup.embed.pixels import load_pixels
    from neardup.hash import hash_image
    from neardup.render import thumbnail
    from neardup.render.html import thumbnail_uri

    upright = Image.fromarray(photos["coffee"]).resize((90, 60))
    upright.save(tmp_path / "upright.png")
    for orientation in range(1, 9):  # stored so that applying the tag gives the upright image back
        inverse = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                   6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}
        stored = upright if inverse[orientation] is None else upright.transpose(inverse[orientation])
        path = tmp_path / f"o{orientation}.png"
        stored.save(path, exif=_exif(orientation))
        with Image.open(path) as im:  # PIL's own reference
            assert np.array_equal(np.asarray(ImageOps.exif_transpose(im).convert("RGB")), np.asarray(upright))
        assert np.array_equal(np.asarray(open_rgb(path)), np.asarray(upright)), orientation
    rotated, straight = tmp_path / "o6.png", tmp_path / "upright.png"
    info, _ = inspect_image(rotated)
    assert info["orientation"] == 6 and (info["width"], info["height"]) == (90, 60)
    assert info["pixel_sha256"] == inspect_image(straight)[0]["pixel_sha256"] == pixel_sha256(upright)
    # embed (Pillow path, and rotated images are routed to it), hash, render: the same pixels
    assert np.array_equal(load_pixels(str(rotated), size=48, crop_fraction=0.9),
                          load_pixels(str(straight), size=48, crop_fraction=0.9))
    for method in ("dhash", "phash"):
        assert np.array_equal(hash_image(rotated, method=method, hash_size=8),
                              hash_image(straight, method=method, hash_size=8))
    assert np.array_equal(thumbnail(str(rotated), 32), thumbnail(str(straight), 32))
    assert thumbnail_uri(str(rotated), 32) == thumbnail_uri(str(straight), 32)
    # a lossy phone photo: upright size, and close to its upright copy
    upright.save(tmp_path / "u.jpg", quality=95)
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "r.jpg", quality=95, exif=_exif(6))
    a, b = np.asarray(open_rgb(tmp_path / "r.jpg"), float), np.asarray(open_rgb(tmp_path / "u.jpg"), float)
    assert a.shape == b.shape == (60, 90, 3) and np.abs(a - b).mean() < 6


def test_first_frame_is_used(tmp_path):
    frames = [Image.fromarray(_array(k, 32, 24)).convert("P") for k in range(4)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    info, reason = inspect_image(tmp_path / "a.gif")
    assert reason is None and info["frames"] == 4
    assert np.array_equal(np.asarray(open_rgb(tmp_path / "a.gif")), np.asarray(frames[0].convert("RGB")))


def test_pixel_hash_is_the_rgb_bytes_and_shape(tmp_path):
    arr = _array(5, 33, 17)
    Image.fromarray(arr).save(tmp_path / "a.png")
    expected = hashlib.sha256(b"RGB 33x17\n" + arr.tobytes()).hexdigest()
    assert inspect_image(tmp_path / "a.png")[0]["pixel_sha256"] == expected
    # same bytes in another shape: another hash
    Image.fromarray(arr.reshape(17, 33, 3).reshape(33, 17, 3)).save(tmp_path / "b.png")
    assert inspect_image(tmp_path / "b.png")[0]["pixel_sha256"] != expected


def test_pixel_cap_comes_before_pillow_limits(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_1bit(20_000, 20_000))  # 400 M pixels: beyond Pillow's own error limit (2 x 89 M)
    assert bomb.stat().st_size < 200_000
    info, reason = inspect_image(bomb, max_pixels=100_000_000)
    assert info is None and reason == "too large: 20000 x 20000 = 400000000 pixels > fetch.max_pixels (100000000)"
    # Pillow's limit never pre-empts the cap, and is restored afterwards
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(_array(1, 100, 100)).save(tmp_path / "small.png")
    info, reason = inspect_image(tmp_path / "small.png", max_pixels=100_000_000)
    assert reason is None and info["width"] == 100
    assert Image.MAX_IMAGE_PIXELS == 1000 and ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_concurrent_decodes_restore_pillow_settings(tmp_path):
    paths = []
    for k in range(24):
        Image.fromarray(_array(k, 48, 32)).save(tmp_path / f"{k}.png")
        paths.append(tmp_path / f"{k}.png")
    before = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(8) as pool:
        shapes = list(pool.map(lambda p: np.asarray(open_rgb(p, max_pixels=10_000)).shape, paths * 4))
    assert set(shapes) == {(32, 48, 3)} and Image.MAX_IMAGE_PIXELS == before


def test_cached_inspection_without_new_fields_is_not_used(tmp_path):
    from neardup.cache import InspectionCache
    from neardup.cache import sha256_file
    from neardup.images import scan_files

    Image.fromarray(_array(1)).save(tmp_path / "a.png")
    digest = sha256_file(tmp_path / "a.png")
    stale = InspectionCache(tmp_path / "c", key="old")
    stale.put(digest, {"width": 60, "height": 40, "format": "PNG"}, None)  # written by older code
    stale.flush()
    res = scan_files([tmp_path / "a.png"], root=tmp_path, set_name="s",
                     cache=InspectionCache(tmp_path / "c", key="old"))
    assert res.manifest["pixel_sha256"].str.len().tolist() == [64]
    # a cached size is still checked against the cap
    res = scan_files([tmp_path / "a.png"], root=tmp_path, set_name="s",
                     cache=InspectionCache(tmp_path / "c", key="old"), max_pixels=100)
    assert res.manifest.empty and res.skipped["reason"].iloc[0].startswith("too large: 60 x 40 = 2400 pixels")
    assert InspectionCache(tmp_path / "c").folder.name != "inspect-v1"  # the default folder was bumped


# ---------------------------------------------------------------- labels


def test_labels_csv_conflicts_repeats_and_no_rows(tmp_path, caplog):
    path = tmp_path / "labels.csv"
    path.write_text("image_id,label\na.jpg,1\na.jpg,1\nb.jpg,3\nb.jpg,0\nb.jpg,3\nc.jpg,\nc.jpg,2\nd.jpg,5\n"
                    "e.jpg,10\ne.jpg,9\n")
    with caplog.at_level(logging.INFO):
        labels = load_labels_csv(path)
    assert labels == {"a.jpg": "1", "b.jpg": "0|3", "c.jpg": "2", "d.jpg": "5", "e.jpg": "10|9"}
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "gives 2 image ids different labels (e.g. b.jpg: 0|3)" in warning[0]
    assert any("repeats 2 image ids with the same label" in r.getMessage() for r in caplog.records)
    caplog.clear()
    path.write_text("image_id,label\n")
    assert load_labels_csv(path) == {}
    assert [r.getMessage() for r in caplog.records] == [f"labels CSV {path} has no rows: no image gets a label"]


def test_messages_name_real_params(tmp_path):
    from neardup.contract import SourceError
    from neardup.fetch.folder import load_label_map

    with pytest.raises(SourceError, match=r"fetch\.folder\.labels_csv"):
        load_labels_csv(tmp_path / "missing.csv")
    with pytest.raises(SourceError, match=r"fetch\.sets\[1\]\.folder\.label_map"):
        load_label_map(tmp_path / "missing.json", param="fetch.sets[1].folder.label_map")
    with pytest.raises(SourceError, match=r"fetch\.input and fetch\.folder\.images"):
        scan_folder(tmp_path / "nowhere", symlinks="inside")
    for module in ("folder", "tfrecords", "kaggle", "__init__", "demo"):
        text = (REPO / "neardup" / "fetch" / f"{module}.py").read_text()
        for stale in ("fetch.root", "fetch.labels_csv", "fetch.label_map_json"):
            assert stale not in text, (module, stale)


# ---------------------------------------------------------------- TFRecords


def test_tfrecords_with_unusable_names_and_no_targets(tmp_path, caplog):
    tf = pytest.importorskip("tensorflow")
    from neardup.fetch.tfrecords import extract_tfrecords

    records = [
        dict(image=_jpeg(1), image_name=b"ok.jpg", target=2),
        dict(image=_jpeg(2), image_name=b"nul\x00byte.jpg", target=1),
        dict(image=_jpeg(3), image_name=b"x" * 300 + b".jpg", target=1),
        dict(image=_jpeg(4), image_name=b"/etc/absolute.jpg", target=1),
        dict(image=_jpeg(5), image_name=b"../escape.jpg", target=1),
        dict(image=_jpeg(6), image_name=b"dir", target=-1),  # a file named dir ...
        dict(image=_jpeg(7), image_name=b"dir/x.jpg", target=-1),  # ... and a file inside a folder dir
        dict(image=_jpeg(8), image_name=b"sub/y.jpg"),  # no target
        dict(image=_jpeg(9), image_name=b"sub"),  # a folder sub exists already
        dict(image=b"", image_name=b"no_bytes.jpg", target=0),
        dict(image=b"not an image", image_name=b"junk.jpg", target=0),
    ]
    src = tmp_path / "rec"
    src.mkdir()
    with tf.io.TFRecordWriter(str(src / "part-0.tfrec")) as writer:
        for record in records:
            writer.write(tf_example(tf, **record))
    with caplog.at_level(logging.WARNING):
        res = extract_tfrecords(str(src / "*.tfrec"), tmp_path / "out", set_name="test")
    m = res.manifest.set_index("id")
    assert len(m) + len(res.skipped) == len(records)  # every record accounted for
    assert m.loc["ok.jpg", "label"] == "2" and "dir" in m.index and "sub/y.jpg" in m.index
    fallback = {f"part-0_{k:06d}.jpg" for k in (1, 2, 3, 4, 6, 8)}
    assert fallback <= set(m.index), sorted(m.index)
    assert (m.loc[["part-0_000006.jpg", "dir", "sub/y.jpg"], "label"] == "").all()
    assert not any(".." in i or i.startswith("/") for i in m.index)
    reasons = dict(zip(res.skipped["path"], res.skipped["reason"]))
    assert reasons[f"{src / 'part-0.tfrec'}#9"].startswith("not an image")
    assert reasons[str(tmp_path / "out" / "images" / "junk.jpg")].startswith("not an image")
    text = " | ".join(r.getMessage() for r in caplog.records)
    assert "6 records have an image_name that cannot be a file name" in text
    assert "4 of 10 records have no target or a negative one" in text


# ---------------------------------------------------------------- set names


@pytest.mark.parametrize("name", ["", "..", ".", "a/b", "a\\b", "nul\x00", " padded"])
def test_set_names_must_be_plain_folder_names(tmp_path, name):
    from neardup.params import ParamsError, load_params

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["fetch"]["sets"] = [{"name": name, "source": "folder", "input": params["fetch"]["input"]}]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"fetch\.sets\[0\]\.name must be a plain folder name"):
        load_params("fetch", tmp_path / "params.yaml")


# ---------------------------------------------------------------- the stage on bad configurations


def _stage_params(tmp_path: Path, **fetch) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["fetch"].update({"source": "folder", "input": "raw", "folder": {"images": ".", "labels_csv": "",
                                                                             "label_map": ""}, **fetch})
    params["cache"]["dir"] = ""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _run_fetch(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT, env={**os.environ, "PYTHONPATH": str(REPO)})


def _one_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_fetch_warns_once_about_several_frames_and_stops_on_no_image(tmp_path, monkeypatch, caplog):
    from neardup.fetch import EmptyDatasetError, fetch_dataset
    from neardup.params import load_params

    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw").mkdir()
    frames = [Image.fromarray(_array(k, 32, 24)).convert("P") for k in range(3)]
    for name in ("a.gif", "b.gif"):
        frames[0].save(tmp_path / "raw" / name, save_all=True, append_images=frames[1:], duration=50)
    (tmp_path / "raw" / "c.jpg").write_bytes(_jpeg(1))
    _stage_params(tmp_path)
    with caplog.at_level(logging.WARNING):
        res = fetch_dataset(load_params("fetch", tmp_path / "params.yaml"), tmp_path / "out")
    assert res.manifest["frames"].tolist() == [3, 3, 1]
    said = [r.getMessage() for r in caplog.records if "several frames" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("2 images have several frames") and "e.g. a.gif (3 frames)" in said[0]
    for name in ("a.gif", "b.gif", "c.jpg"):
        (tmp_path / "raw" / name).write_bytes(b"broken")
    with pytest.raises(EmptyDatasetError, match=r"no readable image in raw: all 3 entries") as info:
        fetch_dataset(load_params("fetch", tmp_path / "params.yaml"), tmp_path / "out")
    assert len(info.value.result.skipped) == 3 and info.value.result.manifest.empty


def test_stage_ends_cleanly_on_bad_configurations(tmp_path):
    # an empty folder
    (tmp_path / "raw").mkdir()
    _stage_params(tmp_path)
    error = _one_error(_run_fetch(tmp_path))
    assert "no readable image in raw: all 0 entries found were skipped" in error and "fetch.input" in error
    # only broken files: the skipped list is still written
    (tmp_path / "raw" / "a.jpg").write_bytes(b"")
    (tmp_path / "raw" / "b.jpg").write_bytes(_jpeg(1)[:100])
    os.mkfifo(tmp_path / "raw" / "c.jpg")
    error = _one_error(_run_fetch(tmp_path))
    assert "no readable image in raw: all 3 entries found were skipped" in error
    assert len(pd.read_csv(tmp_path / "data" / "dataset" / "skipped.csv")) == 3
    # a set named '..'
    _stage_params(tmp_path, sets=[{"name": "..", "source": "folder", "input": "raw"}])
    assert "fetch.sets[0].name must be a plain folder name" in _one_error(_run_fetch(tmp_path))
    # a labels CSV that is not there
    (tmp_path / "raw" / "good.jpg").write_bytes(_jpeg(2))
    _stage_params(tmp_path, folder={"images": ".", "labels_csv": "train.csv", "label_map": ""})
    error = _one_error(_run_fetch(tmp_path))
    assert "raw/train.csv does not exist" in error and "fetch.folder.labels_csv" in error
    # and with everything right it runs
    _stage_params(tmp_path)
    proc = _run_fetch(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "data" / "dataset" / "manifest.csv")["id"].tolist() == ["good.jpg"]


# ---------------------------------------------------------------- DVC


def test_dvcignore_block_is_exact_and_managed(tmp_path):
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern
    import re

    names = ["a b.jpg", "x*y?.jpg", "[ab].jpg", "back\\slash.jpg", "trail.jpg ", "#h.jpg", "!b.jpg", "$x$.jpg",
             "new\nline.jpg", "\udcff.jpg", "ü.jpg"]
    lookalikes = ["a.jpg", "ab.jpg", "xzy.jpg", "backslash.jpg", "trail.jpg", "newXline.jpg", "é.jpg"]
    for name in names:
        regex, _ = GitIgnoreSpecPattern.pattern_to_regex(ignore_pattern("d/" + name).strip())  # DVC strips lines
        assert re.match(regex, "d/" + name), name
        assert not [o for o in lookalikes if o != name and re.match(regex, "d/" + o)], name

    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    (repo / "data" / "raw").mkdir(parents=True)
    (repo / ".dvcignore").write_text("# mine\n/keep/me\n")
    (repo / "data" / "raw" / "ok.jpg").write_bytes(_jpeg(1))
    assert guard_input(repo / "data" / "raw", repo_root=repo) == []
    assert (repo / ".dvcignore").read_text() == "# mine\n/keep/me\n"  # nothing to hide: untouched
    os.mkfifo(repo / "data" / "raw" / "f.jpg")
    os.symlink("nowhere", repo / "data" / "raw" / "d.jpg")
    assert guard_input(repo / "data" / "raw", repo_root=repo) == ["/data/raw/d.jpg", "/data/raw/f.jpg"]
    block = f"{BEGIN}\n/data/raw/d.jpg\n/data/raw/f.jpg\n{END}\n"
    assert (repo / ".dvcignore").read_text() == f"# mine\n/keep/me\n\n{block}"
    (repo / "data" / "raw" / "d.jpg").unlink()
    guard_input(repo / "data" / "raw", repo_root=repo)
    assert (repo / ".dvcignore").read_text() == f"# mine\n/keep/me\n\n{BEGIN}\n/data/raw/f.jpg\n{END}\n"
    (repo / "data" / "raw" / "f.jpg").unlink()
    guard_input(repo / "data" / "raw", repo_root=repo)
    assert (repo / ".dvcignore").read_text() == "# mine\n/keep/me\n"  # the block is gone again


def _sh(cmd, cwd, env, timeout=TIMEOUT):
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{cmd} did not finish in {timeout} s (DVC hangs on a FIFO or a device it tries to hash)")
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def test_dvc_repro_fetch_neither_hangs_nor_aborts(tmp_path, dvc_env):
    """A real ``dvc repro fetch`` on a folder with a FIFO, a link to /dev/zero, a dangling symlink and a
    symlink loop: the ``fetch_input`` stage runs first and hides them from DVC (which hashes
    ``fetch.input`` for fetch), so the first run works with no preparation, the second reruns only
    that check, and the entries are in skipped.csv with their reasons."""
    env = {**dvc_env, "PYTHONPATH": str(tmp_path / "repo")}
    repo = copy_pipeline(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fetch"].update(source="folder", input="data/raw", folder={"images": ".", "labels_csv": "", "label_map": ""})
    params["cache"]["dir"] = ""
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    raw = repo / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / ".gitkeep").touch()
    for k in range(3):
        (raw / f"img{k}.jpg").write_bytes(_jpeg(k))
    os.mkfifo(raw / "fifo.jpg")
    os.symlink("/dev/zero", raw / "zero.jpg")
    os.symlink("/nonexistent/x.jpg", raw / "dangling.jpg")
    os.symlink("loop2.jpg", raw / "loop1.jpg")
    os.symlink("loop1.jpg", raw / "loop2.jpg")
    _sh(["git", "init", "-q"], repo, env)
    _sh([sys.executable, "-m", "dvc", "init", "-q"], repo, env)
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    _sh(["git", "add", "-A"], repo, env)
    _sh(["git", "commit", "-qm", "init"], repo, env)

    first = _sh([sys.executable, "-m", "dvc", "repro", "fetch"], repo, env)
    assert "Running stage 'fetch_input'" in first and "Running stage 'fetch'" in first
    block = (repo / ".dvcignore").read_text()
    assert all(f"/data/raw/{n}\n" in block for n in ("fifo.jpg", "zero.jpg", "dangling.jpg", "loop1.jpg", "loop2.jpg"))
    manifest = pd.read_csv(repo / "data" / "dataset" / "manifest.csv")
    assert sorted(manifest["id"]) == ["img0.jpg", "img1.jpg", "img2.jpg"]
    skipped = pd.read_csv(repo / "data" / "dataset" / "skipped.csv")
    reasons = {Path(p).name: r for p, r in zip(skipped["path"], skipped["reason"])}
    assert set(reasons) == {".gitkeep", "fifo.jpg", "zero.jpg", "dangling.jpg", "loop1.jpg", "loop2.jpg"}
    assert reasons["zero.jpg"].startswith("symlink to a special file (character device)")
    assert (repo / ".dvcignore").read_text() == block  # fetch rewrote the same block: nothing changes
    second = _sh([sys.executable, "-m", "dvc", "repro", "fetch"], repo, env)
    assert re.findall(r"Running stage '([^']+)'", second) == ["fetch_input"], second  # the check only
    # a FIFO added later: the check hides it and fetch reruns to list it
    os.mkfifo(raw / "later.jpg")
    third = _sh([sys.executable, "-m", "dvc", "repro", "fetch"], repo, env)
    assert re.findall(r"Running stage '([^']+)'", third) == ["fetch_input", "fetch"], third
    assert "later.jpg" in (repo / "data" / "dataset" / "skipped.csv").read_text()
