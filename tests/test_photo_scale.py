"""A small photo-scale run: 160 distinct camera-sized (800 x 600) photos and planted copies through
``find_duplicates``, as benchmarks/photo_scale.py runs thousands. The keypoint cache takes under
150 KB an image, features stream through a bounded LRU (never every image's at once), every image's
nearest neighbour gets the cheap glance and only likely copies the full verification, copies are
found and no two different photos are grouped."""
from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from scenes import make_scenes  # noqa: E402

from neardup.layout import Layout  # noqa: E402


def test_a_photo_scale_run_streams_compact_features(tmp_path, monkeypatch):
    import neardup.keypoints as keypoints
    import neardup.verify as verify
    from neardup.api import find_duplicates

    folder = tmp_path / "images"
    make_scenes(folder, 160, workers=2)
    monkeypatch.setattr(verify, "PAIR_BATCH", 8)  # the stores hold at most 4 x 8 feature sets
    stores = []
    close = keypoints.FeatureStore.close

    def recording_close(self):
        stores.append(self)
        close(self)

    monkeypatch.setattr(keypoints.FeatureStore, "close", recording_close)
    cache = tmp_path / "cache"
    result = find_duplicates(folder, out=tmp_path / "out", cache={"dir": str(cache)},
                             plant={"n": 28, "transforms": ["crop_hard", "zoom", "rotate", "hflip"], "seed": 0})
    stats = json.loads((Layout.at(result.out).clusters(result.variant) / "stats.json").read_text())["verify"]
    # every real image's nearest neighbour is looked at (a pair is often both images' nearest)
    assert stats["errors"] == 0 and stats["images"] >= 160 and stats["glanced"] >= 80
    assert stats["escalated"] <= stats["glanced"] // 4  # only likely copies get the full verification
    full = [s for s in stores if s.what == "keypoints"]
    glance = [s for s in stores if s.what == "glance keypoints"]
    assert full and glance and all(s.peak <= 32 for s in stores)
    assert max(s.loads for s in glance) > 32  # more images than the store ever held at once
    files = {s.what: list(s.cache.folder.glob("*.npz")) for s in stores}
    assert len(files["glance keypoints"]) >= 150
    for what, limit in (("keypoints", 150_000), ("glance keypoints", 30_000)):
        sizes = [f.stat().st_size for f in files[what]]
        assert sizes and sum(sizes) / len(sizes) < limit, (what, sum(sizes) / len(sizes))
    outcomes = Layout.at(result.out).clusters(result.variant) / "planted.csv"
    from neardup.contract import read_outcomes
    at = read_outcomes(outcomes)
    at = at[at["eps"] == result.eps]
    assert at["found"].mean() >= 0.9  # the planted copies, at the eps chosen without ground truth
    assert result.groups.empty  # the 160 photos are all different: no group among them
    # a smaller patience: the glance stops after 16 nearest pairs in a row showed nothing (batches of 8)
    again = find_duplicates(folder, out=tmp_path / "again", cache={"dir": str(cache)},
                            plant={"n": 28, "transforms": ["crop_hard", "zoom", "rotate", "hflip"], "seed": 0},
                            cluster={"verify": {"glance_patience": 16}})
    fewer = json.loads((Layout.at(again.out).clusters(again.variant) / "stats.json").read_text())["verify"]
    assert 16 <= fewer["glanced"] <= 24 * (fewer["escalated"] + 1) and fewer["unglanced"] > 0
    assert fewer["glanced"] + fewer["unglanced"] == stats["glanced"]


def test_the_glance_refutes_two_textured_photos_and_leaves_copies_to_the_full_check(tmp_path, monkeypatch):
    """Pairs within the radius get a glance first: two different textured photos that it sees nothing
    shared in are refuted there (no full features extracted for them), a copy goes on and is proven."""
    import numpy as np
    from PIL import Image
    from scipy import sparse

    import neardup.keypoints as keypoints
    from neardup.params import VerifyParams
    from neardup.verify import verify_edges

    a, b, c = make_scenes(tmp_path / "scenes", 3, workers=1)
    crop = tmp_path / "crop.jpg"
    Image.open(a).crop((100, 60, 700, 540)).save(crop, quality=80)
    paths = [str(a), str(b), str(c), str(crop)]
    params = VerifyParams(enabled=True, max_side=512, max_keypoints=1000, min_side=64, min_inliers=12,
                          min_ratio=0.4, factor=0.5, refute_keypoints=200, glance_patience=1000,
                      min_agreement=0.7)
    extracted = []
    real = keypoints.extract
    monkeypatch.setattr(keypoints, "extract", lambda path, **kw: extracted.append((path, kw["max_side"])) or real(path, **kw))
    rows, cols, dist = [0, 0, 1], [1, 3, 2], [0.3, 0.3, 0.3]  # all three within the radius
    graph = sparse.coo_matrix((dist + dist, (rows + cols, cols + rows)), shape=(4, 4)).tocsr()
    stats = {}
    out, verdicts = verify_edges(graph, paths, [f"k{i}" for i in range(4)], params, radius=0.5, stats=stats)
    assert out[0, 3] == pytest.approx(0.15) and verdicts[0, 3] == 1  # the copy: full check, proven
    assert out[0, 1] == out[1, 2] == pytest.approx(0.6) and verdicts[0, 1] == verdicts[1, 2] == -1
    assert stats["verify"]["refuted"] == 2 and stats["verify"]["refuted_at_glance"] == 2
    full = {path for path, side in extracted if side == 512}
    assert full == {str(a), str(crop)}  # the different photos never had their full features extracted
    # refuting switched off: the glance refutes nothing either, and nothing moves away
    kept, _ = verify_edges(graph, paths, [f"k{i}" for i in range(4)], replace(params, refute_keypoints=0), radius=0.5,
                           stats=stats)
    assert kept[0, 1] == pytest.approx(0.3) and stats["verify"]["refuted_at_glance"] == 0
