"""Image folders at fsspec URLs (``fetch.folder.images: file:///...``, ``memory://...``, ``s3://...``): the
manifest keeps URLs that every stage reads, with the same ids, hashes and vectors as the local folder,
and a real `dvc repro` reruns fetch when a file at the URL changes."""
from __future__ import annotations

import shutil

import fsspec
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import save
from neardup.contract import UserError
from neardup.embed.stage import embed_images
from neardup.fetch import fetch_source
from neardup.fetch.folder import scan_folder
from neardup.files import listing_line
from neardup.hash import hash_images
from neardup.params import EmbedParams, params_from_dict
from test_pipeline import copy_project, dvc, init_repo

PARAMS = EmbedParams(models=("efficientnet-lite0",), sizes=(96,), weights="imagenet", pooling="max", batch_size=4,
                     runtime="auto")


def _spec(images: str, tmp_path):
    raw = {"source": "folder", "input": str(tmp_path), "set_name": "train",
           "demo": {"n_distinct": 10, "n_duplicates": 2, "n_label_conflicts": 0, "seed": 0, "n_test": 0, "n_cross": 0},
           "folder": {"images": images, "labels_csv": "", "label_map": ""}, "kaggle": {"competition": "x"},
           "tfrecords": {"pattern": "*.tfrec"}, "max_pixels": 10**8, "symlinks": "inside", "sets": []}
    return params_from_dict({"fetch": raw}, "fetch")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("remote") / "images"
    for name, array in list(photos.items())[:4]:
        save(array[:200, :240], root / "sub" / f"{name}.jpg", quality=90)
    save(next(iter(photos.values()))[:64, :64], root / "small.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _same_scan(local, remote, prefix: str):
    """Same rows but for the path, which is the URL of the local file; same skipped reasons."""
    assert remote.manifest["path"].tolist() == [prefix + i for i in local.manifest["id"]]
    pd.testing.assert_frame_equal(local.manifest.drop(columns="path"), remote.manifest.drop(columns="path"))
    assert remote.skipped["reason"].tolist() == local.skipped["reason"].tolist()
    assert remote.skipped["path"].tolist() == [prefix + "notes.txt"]


def test_file_url_folder_gives_the_local_manifest_vectors_and_hashes(folder, tmp_path, model_cache):
    url = folder.as_uri()
    local = scan_folder(folder, set_name="train", symlinks="inside")
    remote = fetch_source(_spec(url, tmp_path), tmp_path / "out", set_name="train", symlinks="inside")
    _same_scan(local, remote, url + "/")
    here = embed_images("efficientnet-lite0", 96, local.manifest, params=PARAMS, cache_dir=model_cache)
    there = embed_images("efficientnet-lite0", 96, remote.manifest, params=PARAMS, cache_dir="")  # read again
    assert np.array_equal(here.vectors, there.vectors) and list(here.ids) == list(there.ids)
    assert np.array_equal(hash_images("phash", local.manifest, hash_size=8, cache_dir="").vectors,
                          hash_images("phash", remote.manifest, hash_size=8, cache_dir="").vectors)


def test_memory_url_folder(folder, tmp_path):
    fs = fsspec.filesystem("memory")
    for path in folder.rglob("*"):
        if path.is_file():
            fs.pipe(f"/bucket/images/{path.relative_to(folder).as_posix()}", path.read_bytes())
    try:
        remote = fetch_source(_spec("memory://bucket/images", tmp_path), tmp_path / "out", set_name="train",
                              symlinks="inside")
        _same_scan(scan_folder(folder, set_name="train", symlinks="inside"), remote, "memory:///bucket/images/")
        line = listing_line("memory://bucket/images", param="fetch.folder.images")
        assert line.startswith("# memory://bucket/images: 6 files, listing sha256 ")
        fs.pipe("/bucket/images/new.jpg", (folder / "sub" / "coffee.jpg").read_bytes())
        assert listing_line("memory://bucket/images", param="fetch.folder.images") != line  # a file added
    finally:
        fs.rm("/bucket", recursive=True)


def test_the_api_finds_a_copy_in_a_memory_folder(folder, tmp_path, model_cache):
    import io

    import neardup
    from PIL import Image

    fs = fsspec.filesystem("memory")
    for path in folder.rglob("*.jpg"):
        fs.pipe(f"/api/{path.name}", path.read_bytes())
    copy = io.BytesIO()
    Image.open(folder / "sub" / "coffee.jpg").resize((120, 100)).save(copy, "JPEG", quality=70)
    fs.pipe("/api/coffee_small.jpg", copy.getvalue())
    try:
        result = neardup.find_duplicates("memory://api", out=tmp_path / "out", plant={"n": 4},
                                         cache={"dir": model_cache})
    finally:
        fs.rm("/api", recursive=True)
    assert result.manifest["path"].str.startswith("memory:///api/").all() and len(result.manifest) == 5
    groups = result.groups.groupby("group")["id"].apply(set).tolist()
    assert {"coffee.jpg", "coffee_small.jpg"} in groups, groups


def test_bad_urls_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match=r"^fetch.folder.images memory://nowhere/x is not a folder"):
        fetch_source(_spec("memory://nowhere/x", tmp_path), tmp_path / "out", set_name="train", symlinks="inside")
    if not _has("s3fs"):  # the plug-in is not a dependency
        with pytest.raises(UserError, match=r"^fetch.folder.images s3://bucket/train: .*s3fs"):
            fetch_source(_spec("s3://bucket/train", tmp_path), tmp_path / "out", set_name="train", symlinks="inside")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_dvc_reruns_fetch_when_a_file_at_the_url_changes(folder, tmp_path, dvc_env, photos):
    images = tmp_path / "bucket"
    shutil.copytree(folder, images)
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_project(repo)
    (repo / "data" / "raw").mkdir(parents=True)
    (repo / "data" / "raw" / ".gitkeep").touch()
    init_repo(repo, dvc_env)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fetch"].update(source="folder", input="data/raw")
    params["fetch"]["folder"]["images"] = images.as_uri()
    params["cache"]["dir"] = ""
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = dvc("repro", "fetch", cwd=repo, env=dvc_env)
    assert "Running stage 'fetch'" in first
    manifest = pd.read_csv(repo / "data" / "dataset" / "manifest.csv")
    assert len(manifest) == 5 and manifest["path"].str.startswith(images.as_uri() + "/").all()
    assert "6 files, listing sha256" in (repo / "data" / "fetch_input.txt").read_text()
    assert "Running stage 'fetch'" not in dvc("repro", "fetch", cwd=repo, env=dvc_env)  # nothing changed
    save(photos["rocket"][:120, :160], images / "sub" / "coffee.jpg", quality=90)  # a file at the URL changes
    assert "Running stage 'fetch'" in dvc("repro", "fetch", cwd=repo, env=dvc_env)
    changed = pd.read_csv(repo / "data" / "dataset" / "manifest.csv").set_index("id")
    assert changed.loc["sub/coffee.jpg", "sha256"] != manifest.set_index("id").loc["sub/coffee.jpg", "sha256"]
