"""Tiny and empty datasets through the real stage runners, each run as `dvc repro` runs it (the stage
commands of dvc.yaml, in a temporary working directory with its own params.yaml): one to three images
are a valid dataset, and an empty one or too many folds end with one line naming what to change."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import PATHS, REPO, assert_clean_error, stage_commands
from conftest import run_stage_process as run
from neardup.contract import (MANIFEST_COLUMNS, Embeddings, FetchResult, empty_frame, read_table, variant_key,
                              write_fetch_result)
from neardup.images import scan_files
from neardup.layout import Layout


def make_dataset(work, photos, ids, labels, names=None):
    """Images cut from real photos under ``work/img`` (the first two byte-identical when ``ids`` has
    two or more), their manifest written with the contract's writer as fetch writes it."""
    crops = [photos["astronaut"][:160, :200], photos["coffee"][100:260, 50:250], photos["chelsea"][:160, :200]]
    (work / "img").mkdir(parents=True)
    paths = []
    for k, image_id in enumerate(ids):
        path = work / "img" / image_id
        if k == 1:
            shutil.copy(paths[0], path)  # a byte-identical copy: a duplicate in every run
        else:
            Image.fromarray(crops[k]).save(path, quality=92)
        paths.append(path)
    result = scan_files(paths, root=work / "img", set_name="train", labels=dict(zip(ids, labels)),
                        label_names=names)
    assert len(result.manifest) == len(ids)
    write_fetch_result(result, work / PATHS["dataset"])
    return result.manifest


def write_params(work, **groups) -> dict:
    """The repository's params.yaml with a small sweep, no content cache and ``groups`` merged in."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    changes = {"embed": {"weights": "none", "sizes": [64]}, "plant": {"n": 2},
               "hash": {"methods": ["dhash"]}, "cluster": {"hash": "dhash"}, "cache": {"dir": ""}}
    for group, values in [*changes.items(), *groups.items()]:
        params[group].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def fixture_embeddings(work, manifest_path, out):
    """What the embed stage would write, with deterministic random vectors (no model: fast)."""
    manifest = read_table(work / manifest_path)
    vectors = np.random.default_rng(len(manifest)).normal(size=(len(manifest), 16)).astype(np.float32)
    Embeddings(ids=manifest["id"].to_numpy(str), sha256=manifest["sha256"].to_numpy(str), vectors=vectors,
               skipped=pd.DataFrame({"id": pd.Series(dtype=str), "reason": pd.Series(dtype=str)}),
               input_size=64).save(work / out)


def run_pipeline(work, params, *, embed: bool) -> dict:
    """Every stage's process after fetch, in order; ``embed=False`` writes the embed stages' outputs
    as :func:`fixture_embeddings`. Returns the finished processes by stage (lists, matrix stages)."""
    done: dict[str, list] = {}
    for stage, argv in stage_commands(params):
        if stage == "fetch":
            continue  # the dataset is made by the test
        if stage in ("embed", "embed_plants") and not embed:
            plants, layout = "--plants" in argv, Layout.at(work)
            variant = variant_key(argv[argv.index("--model") + 1], argv[argv.index("--size") + 1])
            fixture_embeddings(work, layout.manifest(plants=plants), layout.embeddings(variant, plants=plants))
            continue
        done.setdefault(stage, []).append(run(argv, work))
    return done


def assert_ran(done, *stages):
    for stage in stages:
        for proc in done[stage]:
            assert proc.returncode == 0, f"{stage}: {proc.stderr[-3000:]}"


def test_three_images_with_formula_and_mathtext_names_go_through_every_stage(tmp_path, photos):
    ids = ["=1+1.jpg", "a$b$.jpg", "-x.jpg"]
    names = {"-1": r"$x^2$ \frac{a}", "=cmd": r"$\frac{a}$"}
    manifest = make_dataset(tmp_path, photos, ids, ["-1", "=cmd", "@b"], names)
    params = write_params(tmp_path, act={"n_splits": 5})
    done = run_pipeline(tmp_path, params, embed=True)
    assert_ran(done, "plant", "embed", "embed_plants", "hash", "cluster", "cluster_hash", "evaluate",
               "evaluate_hash", "render")
    # two of the three images are one duplicate group, which stays in one fold: 2 folds at most
    (act,) = done["act"]
    assert_clean_error(act, r"^act\.n_splits is 5 but the 3 image\(s\) can fill only 2 fold\(s\) .*: "
                            r"lower act\.n_splits to at most 2$")
    params = write_params(tmp_path, act={"n_splits": 2})
    ((_, argv),) = [c for c in stage_commands(params) if c[0] == "act"]
    act = run(argv, tmp_path)
    assert act.returncode == 0, act.stderr[-3000:]

    # the names reach every table unchanged, and neutralised on disk
    dataset = tmp_path / PATHS["dataset"] / "manifest.csv"
    assert read_table(dataset)[["id", "label", "label_name"]].equals(manifest[["id", "label", "label_name"]])
    text = dataset.read_text()
    assert "\n'=1+1.jpg," in text and "\n'-x.jpg," in text and ",'=cmd," in text and ",'@b," in text
    assert ",-1," in text  # a number is no formula
    keep, remove = read_table(tmp_path / PATHS["keep"]), read_table(tmp_path / PATHS["remove"])
    assert sorted([*keep["id"], *remove["id"]]) == ["=1+1.jpg", "a$b$.jpg"]
    folds = read_table(tmp_path / PATHS["folds"])
    assert sorted(folds["id"]) == sorted(ids) and folds.groupby("group")["fold"].nunique().max() == 1
    assert "'=1+1.jpg" in (tmp_path / PATHS["folds"]).read_text()

    # the figures with mathtext-like ids and labels are drawn
    variant_key = f"{params['embed']['models'][0]}_64"
    figures = sorted((tmp_path / PATHS["groups"]).glob("*/*.png"))
    assert {f.parent.name for f in figures} == {variant_key, "dhash"}
    assert all(f.stat().st_size > 1000 for f in figures)
    assert len(list((tmp_path / PATHS["review_figures"]).glob(f"{variant_key}/pair_*.png"))) == 1
    assert "=1+1.jpg" in (tmp_path / PATHS["html"]).read_text()


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_images_are_a_dataset(tmp_path, photos, n):
    ids = ["one.jpg", "two.jpg"][:n]
    make_dataset(tmp_path, photos, ids, ["0", "1"][:n])
    params = write_params(tmp_path, act={"n_splits": 2})
    done = run_pipeline(tmp_path, params, embed=False)
    assert_ran(done, "plant", "hash", "cluster", "cluster_hash", "evaluate", "evaluate_hash", "render")
    (act,) = done["act"]
    # one image, or two duplicates (one group), cannot be split into folds; the lists need none
    assert_clean_error(act, r"^act\.n_splits is 2 but the \d image\(s\) can fill only 1 fold\(s\) .*: "
                            r"folds need 2 or more distinct images$")
    assert (tmp_path / PATHS["html"]).is_file() and (tmp_path / PATHS["quality"]).is_file()


def test_an_empty_dataset_stops_each_stage_with_one_line(tmp_path):
    write_fetch_result(FetchResult(empty_frame(MANIFEST_COLUMNS), empty_frame(["path", "reason"])),
                       tmp_path / PATHS["dataset"])
    params = write_params(tmp_path)
    message = r"^data/dataset/manifest\.csv lists no images, .*data/dataset/skipped\.csv.*fetch\.source and fetch\.input"
    commands = dict(stage_commands(params))  # one command per stage is enough here
    (tmp_path / PATHS["plants"]).mkdir(parents=True)
    write_fetch_result(FetchResult(empty_frame(MANIFEST_COLUMNS), empty_frame(["path", "reason"])),
                       tmp_path / PATHS["plants"])
    for stage in ("embed", "embed_plants", "act", "render", "plant"):
        assert_clean_error(run(commands[stage], tmp_path), message)
    argv, layout = commands["cluster"], Layout.at(tmp_path)
    variant = argv[argv.index("--variant") + 1]
    for plants in (False, True):
        for out in (layout.embeddings(variant, plants=plants), layout.hashes(params["cluster"]["hash"], plants=plants)):
            fixture_embeddings(tmp_path, layout.manifest(plants=True), out)
    assert_clean_error(run(argv, tmp_path), message)
    assert_clean_error(run(commands["evaluate"], tmp_path), "No such file")  # nothing clustered: a missing file
