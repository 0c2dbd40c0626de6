"""Trust on unlabelled data: the eps rule never collapses the dataset, exact copies are always found,
AP does not depend on the eps sweep, and the review queue is bounded.

Worst cases are built here: a chain that merges everything at large eps, a look-alike burst with a
byte-identical copy, and perceptual-hash baselines on small real photos.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import save
from neardup.cluster import cluster_vectors
from neardup.cluster.stage import write_cluster_outputs
from neardup.contract import MANIFEST, PLANTED, SKIPPED, TRUTH, write_table
from neardup.evaluate import evaluate_variant
from neardup.evaluate.eps import ALWAYS_ALLOWED
from neardup.evaluate.metrics import average_precision, truth_pairs
from neardup.evaluate.queue import capped_group_pairs
from neardup.params import EvaluateParams

RULE = EvaluateParams(min_precision=0.0, max_unrelated=0.02, max_group_share=0.05, max_grouped_share=0.5,
                      max_pairs_per_image=1.0, fallback_eps=0.7, max_queue=1000)
OPTIONS = dict(metric="cosine", candidates=10, search="exact", nprobe=16, block=256)


def step(rng, point: np.ndarray, distance: float) -> np.ndarray:
    """A unit vector at exactly ``distance`` (cosine) from the unit vector ``point``."""
    u = rng.normal(size=point.shape)
    u -= (u @ point) * point
    u /= np.linalg.norm(u)
    cos = 1.0 - distance
    return cos * point + np.sqrt(1.0 - cos * cos) * u


def chain(rng, n: int, d: int = 64, lo: float = 0.15, hi: float = 0.45) -> np.ndarray:
    """``n`` unit vectors, each ``lo``..``hi`` (cosine) from the previous one: isolated images at small
    eps, one group holding everything at large eps."""
    first = rng.normal(size=d)
    points = [first / np.linalg.norm(first)]
    for gap in rng.uniform(lo, hi, size=n - 1):
        points.append(step(rng, points[-1], gap))
    return np.array(points, np.float32)


def plants_of(rng, vectors: np.ndarray, ids, n: int, distance: float = 0.02):
    originals = rng.choice(len(ids), size=n, replace=False)
    copies = np.array([step(rng, vectors[i].astype(float), distance) for i in originals], np.float32)
    copy_ids = [f"planted/copy_{k:05d}.jpg" for k in range(n)]
    truth = pd.DataFrame({"id": copy_ids, "original": [ids[i] for i in originals], "transform": "jpeg"})
    return copies, copy_ids, truth


def run_case(tmp_path, vectors, ids, *, eps, normalize_k=0, plants=None, content=None, truth=None, rule=RULE,
             verify=None):
    """cluster_vectors + the contract files + evaluate_variant, as the stages do; returns evaluate_variant's result."""
    copies, copy_ids, plant_truth = plants if plants is not None else (None, None, None)
    groups, pairs, outcomes = cluster_vectors(vectors, ids, [""] * len(ids), eps_values=eps, normalize_k=normalize_k,
                                          content=content, plant_vectors=copies, plant_ids=copy_ids,
                                          plant_truth=plant_truth, verify=verify, **OPTIONS)
    dataset, clusters = tmp_path / "dataset", tmp_path / "clusters"
    sha = list(content) if content is not None else [f"sha-{i}" for i in ids]
    write_table(pd.DataFrame({"id": ids, "path": ids, "label": "", "label_name": "", "set": "train", "sha256": sha}),
                dataset / MANIFEST)
    write_table(pd.DataFrame(columns=["path", "reason"]), dataset / SKIPPED)
    write_table(truth if truth is not None else pd.DataFrame(columns=["id", "original", "transform"]),
                dataset / TRUTH)
    write_table(plant_truth if plant_truth is not None else pd.DataFrame(columns=["id", "original", "transform"]),
                tmp_path / "plants_truth.csv")
    write_cluster_outputs(clusters, groups, pairs, outcomes, {"eps": list(eps), "input_size": 0, "n_embedded": len(ids),
                                                             "skipped_ids": [], "search": "exact"})
    return evaluate_variant("run", dataset=dataset, plants_truth=tmp_path / "plants_truth.csv", clusters=clusters,
                        reviews_path=tmp_path / "none.csv", params=rule)


def test_a_chain_that_merges_everything_is_never_chosen(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"img_{i:04d}.jpg" for i in range(300)]
    vectors = chain(rng, len(ids))
    eps = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8]
    metrics, sweep, at, queue, reason = run_case(tmp_path, vectors, ids, eps=eps,
                                                 plants=plants_of(rng, vectors, ids, 40))
    assert sweep["largest_group"].iloc[-1] == 300  # the worst case is real: everything chains at large eps
    limit = max(ALWAYS_ALLOWED, RULE.max_group_share * 300)
    assert metrics["largest_group"] <= limit and metrics["grouped_share"] <= RULE.max_grouped_share
    assert metrics["pairs_per_image"] <= RULE.max_pairs_per_image
    assert metrics["planted_recall"] == 1.0  # the copies are still found
    assert metrics["eps"] < 0.5 and len(queue) <= 300
    # the reason names the rule and judges every eps; the collapsing ones say why they are never chosen
    lines = reason.splitlines()
    assert "planted copies" in lines[0] and sum("| **chosen** |" in line for line in lines) == 1
    assert "never: one group holds 300 images" in reason


def test_the_family_is_the_original_and_its_direct_neighbours_not_its_chained_group(tmp_path):
    """A copy that lands in a chained group counts as with an unrelated image."""
    rng = np.random.default_rng(1)
    ids = [f"img_{i:04d}.jpg" for i in range(200)]
    vectors = chain(rng, len(ids), lo=0.1, hi=0.3)
    plants = plants_of(rng, vectors, ids, 30)
    eps = [0.05, 0.35]
    *_, sweep_reason = run_case(tmp_path, vectors, ids, eps=eps, plants=plants,
                                rule=replace(RULE, max_group_share=1.0, max_grouped_share=1.0,
                                             max_pairs_per_image=1e9))
    outcomes = pd.read_csv(tmp_path / "clusters" / PLANTED)
    at_large = outcomes[outcomes["eps"] == 0.35]
    assert at_large["found"].all() and at_large["with_unrelated"].mean() > 0.5  # chained: not family
    assert not outcomes[outcomes["eps"] == 0.05]["with_unrelated"].any()
    assert "| 0.35 |" in sweep_reason and "| 0.05 |" in sweep_reason
    assert sweep_reason.splitlines()[0].startswith("most planted copies found")
    assert "**chosen**" in next(line for line in sweep_reason.splitlines() if line.startswith("| 0.05 |"))


def test_when_no_eps_passes_the_guards_the_smallest_is_used_and_said(tmp_path):
    rng = np.random.default_rng(2)
    ids = [f"img_{i:03d}.jpg" for i in range(60)]
    vectors = chain(rng, len(ids), lo=0.01, hi=0.02)  # everything chains even at the smallest eps
    metrics, sweep, *_, reason = run_case(tmp_path, vectors, ids, eps=[0.05, 0.1])
    assert metrics["eps"] == 0.05 and sweep["largest_group"].min() == 60
    assert reason.startswith("no eps of the sweep passes the growth guards") and "cluster.eps" in reason


def burst_dataset(rng, d: int = 128):
    """60 varied images, 24 near-identical burst frames, and a byte-identical copy of frame 0."""
    varied = rng.normal(size=(60, d))
    base = rng.normal(size=d)
    burst = base + 0.05 * rng.normal(size=(24, d))
    vectors = np.vstack([varied, burst, burst[:1]]).astype(np.float32)
    ids = [f"varied_{i:02d}.jpg" for i in range(60)] + [f"burst_{i:02d}.jpg" for i in range(24)] + \
        ["burst_00_copy.jpg"]
    content = [f"sha-{i}" for i in ids[:-1]] + ["sha-burst_00.jpg"]  # the copy has the same bytes as frame 0
    return vectors, ids, content


def test_identical_copies_are_at_distance_zero_in_every_run(tmp_path):
    vectors, ids, content = burst_dataset(np.random.default_rng(3))
    eps = [0.01, 0.1, 0.3]
    # without content keys, neighbourhood normalisation pushes the identical pair apart (the bug)
    _, pairs, _ = cluster_vectors(vectors, ids, [""] * len(ids), eps_values=eps, normalize_k=10, **OPTIONS)
    pair = pairs[(pairs["a"] == "burst_00.jpg") & (pairs["b"] == "burst_00_copy.jpg")]
    assert len(pair) == 0 or pair["distance"].iloc[0] > 0.01
    # with them, the pair is at distance 0 and grouped at the smallest eps, in CNN-like and baseline runs
    for normalize_k in (10, 0):
        groups, pairs, _ = cluster_vectors(vectors, ids, [""] * len(ids), eps_values=eps, normalize_k=normalize_k,
                                       content=content, **OPTIONS)
        pair = pairs[(pairs["a"] == "burst_00.jpg") & (pairs["b"] == "burst_00_copy.jpg")]
        assert pair["distance"].tolist() == [0.0] and pair["nearest"].tolist() == [1]
        smallest = groups[groups["eps"] == 0.01].set_index("id")["group"]
        assert smallest["burst_00.jpg"] == smallest["burst_00_copy.jpg"]


def test_images_with_equal_content_count_once_in_the_growth_guards(tmp_path):
    """Fifty copies of one blank image are one duplicate group, not a collapse."""
    rng = np.random.default_rng(4)
    varied = rng.normal(size=(100, 32)).astype(np.float32)
    blank = np.repeat(rng.normal(size=(1, 32)).astype(np.float32), 50, axis=0)
    ids = [f"v_{i:03d}.jpg" for i in range(100)] + [f"blank_{i:02d}.png" for i in range(50)]
    content = [f"sha-{i}" for i in ids[:100]] + ["sha-blank"] * 50
    metrics, *_ = run_case(tmp_path, np.vstack([varied, blank]), ids, eps=[0.05, 0.1], content=content,
                           rule=replace(RULE, max_queue=20))
    assert metrics["largest_group"] == 0  # one content: no group of distinct images
    assert metrics["eps"] == 0.1 and metrics["n_pairs"] == 50 * 49 // 2
    assert metrics["n_queue_left_out"] == 50 * 49 // 2 - 20


def test_of_several_eps_that_find_every_copy_the_smallest_is_chosen(tmp_path):
    """Every copy is found from eps 0.05 on; eps 0.35 adds only a pair of two unrelated images."""
    rng = np.random.default_rng(6)
    vectors = rng.normal(size=(100, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[1] = step(rng, vectors[0], 0.3)  # two different images, alike
    vectors = vectors.astype(np.float32)
    ids = [f"img_{i:03d}.jpg" for i in range(100)]
    plants = plants_of(rng, vectors[2:], ids[2:], 20)
    metrics, _, _, _, reason = run_case(tmp_path, vectors, ids, eps=[0.05, 0.35], plants=plants)
    assert reason.startswith("most planted copies found (the smallest such eps)")
    outcomes = pd.read_csv(tmp_path / "clusters" / PLANTED)
    assert outcomes.groupby("eps")["found"].mean().tolist() == [1.0, 1.0]
    assert metrics["eps"] == 0.05 and metrics["n_pairs"] == 0


def test_proven_copies_count_once_in_the_growth_guards(tmp_path, photos):
    """A folder that is all originals and their copies (wallpapers and their screenshots): every image is
    in a group, which trips max_grouped_share unless the copies are proven (real SIFT, real RANSAC)."""
    from neardup.params import VerifyParams
    from neardup.verify import verify_edges

    rng = np.random.default_rng(5)
    ids, paths = [], []
    for name, array in sorted(photos.items()):
        image = Image.fromarray(array)
        w, h = image.size
        copy = image.rotate(4, resample=Image.Resampling.BICUBIC).crop((w // 10, h // 10, w - w // 10, h - h // 10))
        for suffix, picture in (("", image), ("_copy", copy)):
            ids.append(f"{name}{suffix}.jpg")
            paths.append(str(save(np.asarray(picture), tmp_path / "images" / ids[-1], quality=90)))
    originals = rng.normal(size=(len(photos), 64))
    originals /= np.linalg.norm(originals, axis=1, keepdims=True)
    vectors = np.array([v for o in originals for v in (o, step(rng, o, 0.28))], np.float32)  # each copy at 0.28
    params = VerifyParams(enabled=True, max_side=512, max_keypoints=1000, min_side=64, min_inliers=12, min_ratio=0.4,
                          factor=0.5, refute_keypoints=200, glance_patience=1000,
                      min_agreement=0.7)
    eps = [0.1, 0.2, 0.3]
    plain, *_ = run_case(tmp_path / "plain", vectors, ids, eps=eps)
    assert plain["eps"] < 0.3 and plain["n_groups"] == 0  # at 0.3 every image is grouped: never chosen
    metrics, sweep, at, _, reason = run_case(
        tmp_path / "proven", vectors, ids, eps=eps,
        verify=lambda graph, radius: verify_edges(graph, paths, ids, params, radius=radius))
    pairs = pd.read_csv(tmp_path / "proven" / "clusters" / "pairs.csv")
    proven = pairs[pairs["verified"] == 1]
    assert len(proven) == len(photos) and (proven["b"] == proven["a"].str.replace(".jpg", "_copy.jpg")).all()
    assert np.allclose(proven["distance"], 0.14, atol=1e-4)  # 0.28 x factor
    assert metrics["eps"] == 0.3 and metrics["n_groups"] == len(photos) and metrics["grouped_share"] == 1.0
    assert "of the images are grouped" not in reason


def test_average_precision_does_not_depend_on_the_eps_sweep(tmp_path):
    rng = np.random.default_rng(5)
    ids = [f"img_{i:03d}.jpg" for i in range(150)]
    vectors = rng.normal(size=(150, 48)).astype(np.float32)
    vectors[100:120] = vectors[:20] + 0.3 * rng.normal(size=(20, 48)).astype(np.float32)  # duplicates, far-ish
    truth = truth_pairs(pd.DataFrame({"id": ids[100:120], "original": ids[:20], "transform": ""}))
    aps, nearest = [], []
    for eps in ([0.05, 0.1], [0.05, 0.1, 0.4, 0.9]):
        _, pairs, _ = cluster_vectors(vectors, ids, [""] * len(ids), eps_values=eps, normalize_k=5, **OPTIONS)
        near = pairs[pairs["nearest"] == 1].reset_index(drop=True)
        aps.append(average_precision(near, truth))
        nearest.append(near)
    pd.testing.assert_frame_equal(nearest[0], nearest[1])
    assert aps[0] == aps[1] and aps[0] > 0.5
    assert (nearest[0].groupby("a").size().max()) >= 1 and len(nearest[0]) >= 150 * 10 // 2


def test_the_review_queue_is_capped_closest_first_and_counts_what_it_left_out():
    ids = [f"img_{i:03d}.jpg" for i in range(200)]
    groups = pd.DataFrame({"eps": 0.5, "group": 0, "id": ids, "label": "", "distance": 0.1})
    manifest = pd.DataFrame({"id": ids, "sha256": [f"s{i}" for i in range(200)]})
    scored = pd.DataFrame({"a": ids[:30], "b": ids[1:31], "distance": np.linspace(0.3, 0.01, 30), "nearest": 1})
    table, left_out = capped_group_pairs(groups, manifest, variant="r", pairs=scored, max_pairs=50)
    assert len(table) == 50 and left_out == 200 * 199 // 2 - 50
    assert table["distance"].iloc[:30].tolist() == sorted(scored["distance"])  # scored pairs first, closest first
    assert table["distance"].iloc[30:].isna().all() and not table.duplicated(["a", "b"]).any()
    assert (table["a"] < table["b"]).all()


@pytest.mark.parametrize("method", ["dhash", "phash"])
def test_hash_baselines_on_small_photos_never_swallow_the_dataset(tmp_path, photos, method):
    """Small tiles of a few photos: at large eps a hash puts nearly everything in one group."""
    from neardup.hash import hash_manifest
    from neardup.images import scan_files
    from neardup.plant import plant_copies

    rng = np.random.default_rng(6)
    folder = tmp_path / "images"
    for name, photo in photos.items():
        h, w = photo.shape[:2]
        for k in range(25):
            side = int(rng.integers(48, min(h, w) // 2))
            y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
            tile = np.asarray(Image.fromarray(photo[y:y + side, x:x + side]).resize((32, 32)))
            save(tile, folder / f"{name}_{k:02d}.png")
    manifest = scan_files(sorted(folder.glob("*.png")), root=folder, set_name="train").manifest
    planted = plant_copies(manifest, tmp_path / "plants", n=30, transforms=["jpeg", "downscale", "brightness_contrast"],
                           seed=0)
    real = hash_manifest(manifest, method=method, hash_size=8)
    copies = hash_manifest(planted.manifest, method=method, hash_size=8)
    eps = [0.1, 0.2, 0.3125, 0.4, 0.5, 0.6, 0.7, 0.8]
    ids = real.ids.tolist()
    metrics, sweep, *_ = run_case(tmp_path / "run", real.vectors, ids, eps=eps,
                                  plants=(copies.vectors, copies.ids.tolist(), planted.truth),
                                  content=manifest.set_index("id").loc[ids, "sha256"].tolist())
    assert sweep["largest_group"].max() > 0.5 * len(ids)  # the hash does collapse at large eps
    assert metrics["largest_group"] <= max(ALWAYS_ALLOWED, 0.05 * len(ids))
    assert metrics["grouped_share"] <= 0.5 and metrics["n_pairs"] <= len(ids)
