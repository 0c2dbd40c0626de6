"""Tests of the data sources: tables, folder, demo, TFRecords and Kaggle download."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO, tf_example
from neardup.contract import (
    MANIFEST_COLUMNS,
    SKIPPED_COLUMNS,
    TRUTH_COLUMNS,
    FetchResult,
    SourceError,
    UserError,
    read_table,
    read_truth,
    write_fetch_result,
)
from neardup.fetch.demo import SHORT_SIDE, make_demo
from neardup.fetch.folder import scan_folder
from neardup.fetch.kaggle import download_competition
from neardup.transforms import EASY_TRANSFORMS, TRANSFORMS


def _jpeg_bytes(seed: int, w: int = 48, h: int = 40) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ---------------------------------------------------------------- tables


def test_write_and_read_fetch_result(tmp_path):
    manifest = pd.DataFrame(
        [["a.jpg", "x/a.jpg", "0", "zero", "train", "ab" * 32, 10, 20, "JPEG", 1, 1, "ef" * 32],
         ["b.jpg", "x/b.jpg", "", "", "train", "cd" * 32, 30, 40, "PNG", 3, 6, "01" * 32]],
        columns=MANIFEST_COLUMNS,
    )
    skipped = pd.DataFrame([["x/c.txt", "not an image: cannot identify image file"]], columns=SKIPPED_COLUMNS)
    write_fetch_result(FetchResult(manifest, skipped, None), tmp_path / "out")
    back = read_table(tmp_path / "out" / "manifest.csv")
    assert back["label"].tolist() == ["0", ""]  # an empty label stays '', not NaN
    assert back["width"].tolist() == ["10", "30"]  # every column read as str
    pd.testing.assert_frame_equal(back, manifest.astype(str))
    assert (tmp_path / "out" / "truth.csv").read_text().strip() == ",".join(TRUTH_COLUMNS)
    assert read_truth(tmp_path / "out") is None  # a header-only truth: nothing known
    assert read_truth(tmp_path / "nowhere") is None
    truth = pd.DataFrame([["copy.jpg", "a.jpg", "jpeg"]], columns=TRUTH_COLUMNS)
    write_fetch_result(FetchResult(manifest, skipped, truth), tmp_path / "out")
    pd.testing.assert_frame_equal(read_truth(tmp_path / "out"), truth)
    with pytest.raises(ValueError, match=r"manifest\.csv must have columns"):
        write_fetch_result(FetchResult(manifest[["id"]], skipped), tmp_path / "bad")


# ---------------------------------------------------------------- folder


@pytest.fixture
def cassava_like(tmp_path) -> Path:
    root = tmp_path / "train_images"
    files = {"100.jpg": 1, "sub/200.jpg": 2, "sub/deeper/300.png": 3, "other/400.jpg": 4}
    for rel, seed in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_jpeg_bytes(seed)) if rel.endswith(".jpg") else Image.open(
            io.BytesIO(_jpeg_bytes(seed))).save(root / rel)
    broken = _jpeg_bytes(9)
    (root / "sub" / "broken.jpg").write_bytes(broken[: len(broken) // 2])
    (root / ".DS_Store").write_bytes(b"\x00\x01junk")
    (root / "train.csv").write_text("image_id,label\n100.jpg,0\n200.jpg,3\n300.png,1\nnot_there.jpg,2\n")
    (root / "label_num_to_disease_map.json").write_text(json.dumps(
        {"0": "Cassava Bacterial Blight (CBB)", "1": "Cassava Brown Streak Disease (CBSD)", "3": "Healthy"}))
    return root


def test_scan_folder(cassava_like):
    root = cassava_like
    res = scan_folder(root, labels_csv=root / "train.csv",
                      label_map_json=root / "label_num_to_disease_map.json", set_name="train", symlinks="inside")
    m = res.manifest
    assert m["id"].tolist() == ["100.jpg", "other/400.jpg", "sub/200.jpg", "sub/deeper/300.png"]
    assert m["label"].tolist() == ["0", "", "3", "1"]
    assert m["label_name"].tolist() == [
        "Cassava Bacterial Blight (CBB)", "", "Healthy", "Cassava Brown Streak Disease (CBSD)"]
    assert m["format"].tolist() == ["JPEG", "JPEG", "JPEG", "PNG"]
    for _, row in m.iterrows():
        assert row["sha256"] == hashlib.sha256((root / row["id"]).read_bytes()).hexdigest()
        assert row["path"] == str(root / row["id"])
    reasons = dict(zip(res.skipped["path"], res.skipped["reason"]))
    assert reasons[str(root / "sub" / "broken.jpg")].startswith("truncated image")
    assert reasons[str(root / "train.csv")].startswith("not an image")
    assert reasons[str(root / "label_num_to_disease_map.json")].startswith("not an image")
    assert reasons[str(root / ".DS_Store")].startswith("not an image")
    every = {str(p) for p in root.rglob("*") if p.is_file()}
    assert set(m["path"]) | set(res.skipped["path"]) == every
    assert not set(m["path"]) & set(res.skipped["path"])
    assert res.skipped["path"].tolist() == sorted(res.skipped["path"])


def test_scan_folder_errors(cassava_like, tmp_path):
    with pytest.raises(SourceError, match="nowhere") as info:
        scan_folder(tmp_path / "nowhere", symlinks="inside")
    assert isinstance(info.value, UserError)  # the stage ends with this message, not a traceback
    bad_csv = tmp_path / "labels.csv"
    bad_csv.write_text("image,target\n100.jpg,0\n")
    with pytest.raises(SourceError, match=r"labels\.csv.*image_id"):
        scan_folder(cassava_like, labels_csv=bad_csv, symlinks="inside")
    with pytest.raises(SourceError, match="missing.json"):
        scan_folder(cassava_like, label_map_json=tmp_path / "missing.json", symlinks="inside")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(SourceError, match="JSON object"):
        scan_folder(cassava_like, label_map_json=tmp_path / "list.json", symlinks="inside")


# ---------------------------------------------------------------- demo


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Two default-size demo builds with the same seed (and their build times)."""
    out = []
    for k in range(2):
        d = tmp_path_factory.mktemp(f"demo{k}")
        t0 = time.perf_counter()
        res = make_demo(d / "data", seed=0)
        out.append((d / "data", res, time.perf_counter() - t0))
    return out


def test_demo_counts_and_layout(demo_runs):
    out_dir, res, seconds = demo_runs[1]
    m, truth = res.manifest, res.truth
    assert seconds < 20, f"demo build took {seconds:.1f} s"
    assert len(m) == 300 + 60 and len(truth) == 60 and len(res.skipped) == 2
    assert list(truth.columns) == TRUTH_COLUMNS
    assert m["id"].is_unique and m["id"].tolist() == sorted(m["id"])
    assert m["id"].str.match(r"^(tiles/[a-z]+_\d{3}|copies/copy_\d{3})\.jpg$").all()
    assert (m["format"] == "JPEG").all() and (m["set"] == "demo").all()
    assert m["sha256"].is_unique, "no planted copy may be byte-identical to another image"
    assert all(p == str(out_dir / "images" / i) for i, p in zip(m["id"], m["path"]))
    assert set(truth["id"]) == set(m["id"][m["id"].str.startswith("copies/")])
    assert set(truth["original"]) <= set(m["id"][m["id"].str.startswith("tiles/")])
    assert set(truth["transform"]) == set(EASY_TRANSFORMS)
    assert not any(t in i for i in m["id"] for t in TRANSFORMS)
    reasons = sorted(res.skipped["reason"])
    assert reasons[0].startswith("not an image") and reasons[1].startswith("truncated image")
    tiles = m[m["id"].str.startswith("tiles/")]
    assert tiles["label"].nunique() >= 8
    short = tiles[["width", "height"]].astype(int).min(axis=1)
    assert short.between(*SHORT_SIDE).all()  # tiles enlarged to ordinary photo size
    assert (tiles["label"] == tiles["id"].str.extract(r"tiles/([a-z]+)_")[0]).all()


def test_demo_label_conflicts(demo_runs):
    res = demo_runs[0][1]
    label = dict(zip(res.manifest["id"], res.manifest["label"]))
    conflicts = sum(label[c] != label[o] for c, o in zip(res.truth["id"], res.truth["original"]))
    assert conflicts == 5


def test_demo_deterministic(demo_runs):
    (_, a, _), (_, b, _) = demo_runs
    cols = [c for c in MANIFEST_COLUMNS if c != "path"]
    pd.testing.assert_frame_equal(a.manifest[cols], b.manifest[cols])
    pd.testing.assert_frame_equal(a.truth, b.truth)


def test_demo_small_relative_and_rerun(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = make_demo(Path("d"), n_distinct=20, n_duplicates=9, n_label_conflicts=0, seed=3)
    assert res.manifest["path"].iloc[0].startswith("d/images/")
    assert len(res.manifest) == 29 and set(res.truth["transform"]) == set(EASY_TRANSFORMS)
    again = make_demo(Path("d"), n_distinct=10, n_duplicates=0, n_label_conflicts=0, seed=3)
    assert len(again.manifest) == 10 and again.truth.empty  # old files were replaced
    assert len(list((tmp_path / "d" / "images").rglob("*.jpg"))) == 11  # 10 tiles + truncated


def test_demo_invalid(tmp_path):
    with pytest.raises(ValueError, match="at most"):
        make_demo(tmp_path, n_distinct=100_000)
    with pytest.raises(ValueError, match="n_label_conflicts"):
        make_demo(tmp_path, n_distinct=10, n_duplicates=2, n_label_conflicts=3)


# ---------------------------------------------------------------- TFRecords


def test_extract_tfrecords(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from neardup.fetch.tfrecords import extract_tfrecords

    src = tmp_path / "tfrec"
    src.mkdir()
    good = {k: _jpeg_bytes(k) for k in range(4)}
    with tf.io.TFRecordWriter(str(src / "ld_train00-3.tfrec")) as w:
        w.write(tf_example(tf, image=good[0], image_name=b"1000.jpg", target=0))
        w.write(tf_example(tf, image=good[1], image_name=b"1001.jpg", target=4))
        w.write(tf_example(tf, image=b"\xff\xd8\xff\xe0 not really a jpeg", image_name=b"1002.jpg", target=2))
    with tf.io.TFRecordWriter(str(src / "ld_test01-3.tfrec")) as w:
        w.write(tf_example(tf, image=good[2]))  # no name, no target
        w.write(tf_example(tf, image=good[3], target=1))  # no name
        w.write(tf_example(tf, image_name=b"empty.jpg", target=1))  # no image
    with tf.io.TFRecordWriter(str(src / "ld_zz02-1.tfrec")) as w:
        w.write(tf_example(tf, image=good[0], image_name=b"2000.jpg", target=0))
        w.write(tf_example(tf, image=good[1], image_name=b"2001.jpg", target=0))
    data = (src / "ld_zz02-1.tfrec").read_bytes()
    (src / "ld_zz02-1.tfrec").write_bytes(data[:-10])  # second record truncated
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"0": "CBB", "4": "Healthy"}))

    res = extract_tfrecords(str(src / "*.tfrec"), tmp_path / "out", set_name="train", label_map_json=label_map)
    m = res.manifest
    assert m["id"].tolist() == [
        "1000.jpg", "1001.jpg", "2000.jpg", "ld_test01-3_000000.jpg", "ld_test01-3_000001.jpg"]
    assert m["label"].tolist() == ["0", "4", "0", "", "1"]
    assert m["label_name"].tolist() == ["CBB", "Healthy", "CBB", "", "1"]
    assert m["sha256"].tolist() == [hashlib.sha256(good[k]).hexdigest() for k in (0, 1, 0, 2, 3)]
    assert m["path"].tolist() == [str(tmp_path / "out" / "images" / i) for i in m["id"]]
    reasons = dict(zip(res.skipped["path"], res.skipped["reason"]))
    assert len(reasons) == 3
    assert reasons[str(tmp_path / "out" / "images" / "1002.jpg")].startswith(("truncated image", "unreadable"))
    assert reasons[f"{src / 'ld_test01-3.tfrec'}#2"].startswith("not an image")
    assert "corrupt TFRecord" in reasons[str(src / "ld_zz02-1.tfrec")]

    with pytest.raises(SourceError, match="nothing-here"):
        extract_tfrecords(str(tmp_path / "nothing-here*.tfrec"), tmp_path / "out2")


# ---------------------------------------------------------------- Kaggle


def test_download_without_kaggle_package(tmp_path):
    if importlib.util.find_spec("kaggle") is not None:
        pytest.skip("the kaggle package is installed here")
    with pytest.raises(SourceError, match="pip install kaggle"):
        download_competition("cassava-leaf-disease-classification", tmp_path / "cassava")


def test_download_without_credentials(tmp_path, monkeypatch):
    import neardup.fetch.kaggle as kaggle_source

    monkeypatch.setattr(kaggle_source, "_kaggle_installed", lambda: True)
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SourceError, match=r"kaggle\.json.*KAGGLE_USERNAME"):
        download_competition("cassava-leaf-disease-classification", tmp_path / "cassava")


def test_download_skipped_when_present(tmp_path):
    dest = tmp_path / "cassava"
    (dest / "train_images").mkdir(parents=True)
    (dest / "train.csv").write_text("image_id,label\n")
    assert download_competition("cassava-leaf-disease-classification", dest) == dest


def test_demo_test_set_with_cross_set_copies(tmp_path):
    res = make_demo(tmp_path, n_distinct=20, n_duplicates=4, n_label_conflicts=0, seed=2, set_name="train",
                    n_test=8, n_cross=5)
    m = res.manifest.set_index("id")
    assert len(m) == 37 and (m["set"] == "test").sum() == 13 and (m["set"] == "train").sum() == 24
    cross = res.truth[res.truth["id"].str.startswith("test/cross/")]
    assert len(cross) == 5 and (m.loc[cross["original"], "set"] == "train").all()
    assert (m.loc[cross["id"], "label"].to_numpy() == m.loc[cross["original"], "label"].to_numpy()).all()
    # the test set's own tiles share no pixels with the train tiles: no byte-identical image either
    assert m["sha256"].is_unique


def test_fetch_sets_prefix_ids_and_name_sets(tmp_path):
    from neardup.fetch import fetch_dataset
    from neardup.params import ParamsError, load_params

    for year, n in (("2020", 3), ("2019", 2)):
        folder = tmp_path / "raw" / f"c{year}" / "img"
        folder.mkdir(parents=True)
        for k in range(n):
            arr = (np.random.default_rng(k + 10 * n).random((40, 50, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(folder / f"{k}.jpg")
    (tmp_path / "raw" / "c2020" / "labels.csv").write_text("image_id,label\n0.jpg,a\n1.jpg,b\n2.jpg,a\n")
    sets = f"""
  - {{name: train2020, source: folder, input: {tmp_path / 'raw' / 'c2020'}, folder: {{images: img, labels_csv: labels.csv}}}}
  - {{name: train2019, source: folder, input: {tmp_path / 'raw' / 'c2019'}, folder: {{images: img}}}}
"""
    params = yaml.safe_load((REPO / "params.yaml").read_text())  # every other key as in the repository
    params["fetch"].update(input=str(tmp_path / "raw"), sets=[])
    text = yaml.safe_dump(params).replace("  sets: []\n", "  sets:" + sets)
    assert text.count("name: train20") == 2
    (tmp_path / "params.yaml").write_text(text)
    res = fetch_dataset(load_params("fetch", tmp_path / "params.yaml"), tmp_path / "out")
    assert res.manifest["id"].tolist() == ["train2019/0.jpg", "train2019/1.jpg", "train2020/0.jpg",
                                           "train2020/1.jpg", "train2020/2.jpg"]
    assert res.manifest["set"].tolist() == ["train2019"] * 2 + ["train2020"] * 3
    assert res.manifest.set_index("id").loc["train2020/1.jpg", "label"] == "b"
    (tmp_path / "params.yaml").write_text(text.replace(f"input: {tmp_path / 'raw' / 'c2019'}", "input: /elsewhere"))
    with pytest.raises(ParamsError, match=r"fetch.sets\[1\].input .* must lie under fetch.input"):
        load_params("fetch", tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(text.replace("train2019", "train2020"))
    with pytest.raises(ParamsError, match="unique"):
        load_params("fetch", tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(text.replace("name: train2019,", "nmae: x, name: train2019,"))
    with pytest.raises(ParamsError, match=r"fetch.sets\[1\].nmae.*did you mean 'fetch.sets\[1\].name'"):
        load_params("fetch", tmp_path / "params.yaml")


def test_a_find_output_inside_the_images_is_never_scanned(tmp_path):
    """`neardup find ... --out` inside the folder it scans: the next scan skips that folder (its marker)."""
    from neardup.contract import OUTPUT_MARKER

    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(root / "a.jpg")
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(root / "sub" / "b.jpg")
    out = root / "neardup_out"
    (out / "reports").mkdir(parents=True)
    (out / "reports" / "keep.csv").write_text("group,id\n0,a.jpg\n")
    Image.fromarray(np.full((40, 50, 3), 10, np.uint8)).save(out / "thumb.jpg")
    seen = scan_folder(root, set_name="train", symlinks="inside")
    assert len(seen.manifest) == 3 and len(seen.skipped) == 1  # without the marker: read as input
    (out / OUTPUT_MARKER).write_text("neardup find output\n")
    res = scan_folder(root, set_name="train", symlinks="inside")
    assert sorted(res.manifest["id"]) == ["a.jpg", "sub/b.jpg"] and len(res.skipped) == 0
