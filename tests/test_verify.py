"""Geometric verification on real photos with real OpenCV SIFT and RANSAC: copies (rotated, cropped,
mirrored) are proven, different photos are not (nor a degenerate fit onto one keypoint), textured
different photos are refuted, tiny images are left alone, an image's nearest neighbour is verified
beyond the radius, and keypoints are cached by content and checked before they are trusted."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy import sparse

from conftest import save
from neardup.params import VerifyParams
from dataclasses import replace

from neardup.keypoints import FeatureStore, extract
from neardup.verify import distinct_points, match, verify_edges

PARAMS = VerifyParams(enabled=True, max_side=512, max_keypoints=1000, min_side=64, min_inliers=12, min_ratio=0.4,
                      factor=0.5, refute_keypoints=200, glance_patience=1000,
                      min_agreement=0.7)


@pytest.fixture(scope="module")
def files(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("verify")
    original = Image.fromarray(photos["astronaut"])
    w, h = original.size
    copy = original.rotate(5, resample=Image.Resampling.BICUBIC).crop((w // 10, h // 10, w - w // 10, h - h // 10))
    paths = {
        "original": save(np.asarray(original), root / "original.jpg", quality=90),
        "rotated_crop": save(np.asarray(copy.resize((300, 300))), root / "rotated_crop.jpg", quality=80),
        "mirror": save(np.asarray(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), root / "mirror.jpg"),
        "other": save(photos["coffee"], root / "other.jpg", quality=90),
        "tiny": save(np.asarray(original.resize((32, 32))), root / "tiny.png"),
        # a blurred thumbnail blown up: ~50 keypoints, onto which many of another photo's match
        "blurred": save(np.asarray(original.resize((96, 96)).filter(ImageFilter.GaussianBlur(2))
                                   .resize((300, 300))), root / "blurred.jpg", quality=90),
    }
    return {k: str(v) for k, v in paths.items()}


def test_copies_are_proven_and_different_photos_are_not(files):
    feats = {k: extract(p) for k, p in files.items()}
    rotated = match(feats["original"], feats["rotated_crop"])
    assert rotated.inliers >= 30 and not rotated.mirrored
    scale = np.hypot(*rotated.transform[:, 0])  # 512 px original, 80 % crop shown at 300 px
    assert 0.6 < scale < 0.9
    mirrored = match(feats["original"], feats["mirror"])
    assert mirrored.inliers >= 30 and mirrored.mirrored
    assert match(feats["original"], feats["other"]).inliers < PARAMS.min_inliers
    assert not feats["tiny"].usable and match(feats["original"], feats["tiny"]).inliers == 0
    # inliers count distinct keypoint locations: SIFT repeats a location per orientation
    assert rotated.inliers == distinct_points(rotated.pairs[:, :2], rotated.pairs[:, 2:]) <= len(rotated.pairs)
    assert distinct_points(np.float32([[1, 2], [1, 2], [3, 4]]), np.float32([[0, 0], [5, 5], [6, 6]])) == 2


def test_the_mirrors_keypoints_are_those_sift_finds_in_the_mirror(photos, tmp_path):
    """The mirror's features are derived, not detected again: most of them are what SIFT finds when
    run on the mirrored image, at the same place with the same descriptor (lossless files: JPEG's
    8 x 8 blocks are not mirror-symmetric)."""
    derived = extract(str(save(photos["astronaut"], tmp_path / "a.png")))
    detected = extract(str(save(np.ascontiguousarray(photos["astronaut"][:, ::-1]), tmp_path / "mirror.png")))
    gap = np.linalg.norm(derived.mirror_points[:, None] - detected.points[None], axis=2)
    near = gap.min(axis=1) < 0.05
    assert near.mean() > 0.5
    pairs = [(i, j) for i in np.flatnonzero(near) for j in np.flatnonzero(gap[i] < 0.05)]
    same = {i for i, j in pairs if np.abs(derived.mirror_descriptors[i].astype(int) - detected.descriptors[j]).max() <= 1}
    assert len(same) > 0.6 * near.sum()


def test_a_copy_resized_to_another_aspect_ratio_is_proven_by_an_affine_map(files, photos, tmp_path):
    """ML datasets resize to squares: 512 x 512 to 300 x 200 is no similarity, an affine map fits it."""
    from neardup.render.pairs import transform_text

    squashed = save(np.asarray(Image.fromarray(photos["astronaut"]).resize((300, 200))), tmp_path / "s.jpg", quality=90)
    original = extract(files["original"])
    m = match(original, extract(str(squashed)))
    assert m.proves(PARAMS) and not m.mirrored
    assert np.allclose(np.diag(m.transform[:, :2]), [300 / 512, 200 / 512], atol=0.02)
    assert transform_text(m).startswith("one affine map")
    assert transform_text(match(original, extract(files["rotated_crop"]))) == "one rotation, scale and shift"


def test_a_degenerate_fit_and_a_weak_agreement_prove_nothing(files):
    feats = {k: extract(p) for k, p in files.items()}
    # many of the coffee photo's keypoints match the few of a blurred thumbnail, and RANSAC can fit a
    # transform of scale ~0 sending them all to one point: one location agrees, not a dozen
    degenerate = match(feats["other"], feats["blurred"])
    assert degenerate.matches >= PARAMS.min_inliers and degenerate.inliers <= 2 and not degenerate.proves(PARAMS)
    rotated = match(feats["original"], feats["rotated_crop"])
    share = rotated.inliers / rotated.matches
    assert rotated.proves(replace(PARAMS, min_ratio=share))
    assert not rotated.proves(replace(PARAMS, min_ratio=min(1.0, share + 0.01)))
    assert not rotated.proves(replace(PARAMS, min_inliers=rotated.inliers + 1))


def test_verified_pairs_move_closer_refuted_ones_away_and_features_are_cached(files, tmp_path, caplog):
    names = ["original", "rotated_crop", "other", "tiny"]
    paths = [files[k] for k in names]
    content = [f"key-{k}" for k in names]
    # the copy at 0.9 (beyond the radius 0.5, but the rotated crop's nearest), the different photo and
    # the tiny image within the radius, and other-tiny at 0.95 (beyond it, nobody's nearest)
    rows, cols, dist = [0, 0, 0, 2], [1, 2, 3, 3], [0.9, 0.4, 0.4, 0.95]
    graph = sparse.coo_matrix((dist + dist, (rows + cols, cols + rows)), shape=(4, 4)).tocsr()
    stats = {}
    out, verdicts = verify_edges(graph, paths, content, PARAMS, radius=0.5, cache_dir=str(tmp_path), stats=stats)
    assert out[0, 1] == out[1, 0] == pytest.approx(0.45)  # the copy: proven, half the distance
    assert out[0, 2] == out[2, 0] == pytest.approx(0.8)  # two textured photos that do not agree: refuted
    assert out[0, 3] == pytest.approx(0.4)  # tiny: not verified, not moved
    assert out[2, 3] == pytest.approx(0.95)  # far and nobody's nearest: not verified
    # the copy beyond the radius is glanced at first (small features), then verified
    assert stats["verify"] == {"pairs": 3, "images": 4, "glanced": 1, "unglanced": 0, "escalated": 1, "verified": 1,
                               "refuted": 1, "refuted_at_glance": 0, "unconfirmed": 0, "too_small": 1,
                               "errors": 0}
    assert verdicts[0, 1] == verdicts[1, 0] == 1 and verdicts[0, 2] == verdicts[2, 0] == -1 and verdicts.nnz == 4
    blind, _ = verify_edges(graph, paths, content, replace(PARAMS, glance_patience=0), radius=0.5, stats=stats)
    assert blind[0, 1] == pytest.approx(0.9) and stats["verify"]["unglanced"] == 1  # no glance: not brought in
    kept, _ = verify_edges(graph, paths, content, replace(PARAMS, refute_keypoints=0), radius=0.5)
    assert kept[0, 2] == pytest.approx(0.4) and kept[0, 1] == pytest.approx(0.45)  # refuting off
    # a planted copy (row 4) nearer to the rotated crop than the original: the crop's nearest real image
    # is still verified, so copies never change what happens to real images
    planted = sparse.bmat([[graph, sparse.csr_matrix(([0.05], ([1], [0])), shape=(4, 1))],
                           [sparse.csr_matrix(([0.05], ([0], [1])), shape=(1, 4)), None]]).tocsr()
    with_copy, _ = verify_edges(planted, paths + [files["mirror"]], content + ["key-mirror"], PARAMS, radius=0.5,
                                n_reference=4)
    assert with_copy[0, 1] == pytest.approx(0.45) and with_copy[1, 4] == pytest.approx(0.025)
    unaware, _ = verify_edges(planted, paths + [files["mirror"]], content + ["key-mirror"], PARAMS, radius=0.5)
    assert unaware[0, 1] == pytest.approx(0.9)  # without n_reference the copy would have hidden it
    full = FeatureStore(paths, content, PARAMS, cache_dir=str(tmp_path)).cache.folder
    glance = FeatureStore(paths, content, PARAMS, cache_dir=str(tmp_path), glance=True).cache.folder
    cached = sorted(full.glob("*.npz"))
    assert len(cached) == 4 and len(list(glance.glob("*.npz"))) == 4  # the glance sees every verified pair first
    again, _ = verify_edges(graph, paths, content, PARAMS, radius=0.5, cache_dir=str(tmp_path))
    assert (again != out).nnz == 0
    cached[0].write_bytes(cached[0].read_bytes()[:100])  # truncated: not trusted, extracted again
    with caplog.at_level("WARNING"):
        mended, _ = verify_edges(graph, paths, content, PARAMS, radius=0.5, cache_dir=str(tmp_path))
    assert f"cached features {cached[0]} cannot be trusted" in caplog.text
    assert (mended != out).nnz == 0 and len(list(full.glob("*.npz"))) == 4


def test_the_proof_is_drawn_in_the_figures_and_the_review_view(files, tmp_path):
    import json
    import re

    import pandas as pd

    from neardup.render.pairs import pair_figure
    from neardup.render.review_view import review_section
    from neardup.verify import pair_matches

    ids = ["original", "rotated_crop", "mirror", "other"]
    manifest = pd.DataFrame({"id": ids, "path": [files[k] for k in ids], "label": "", "label_name": "", "set": "t",
                             "sha256": [f"{k:064x}" for k in range(4)]})
    sizes = [Image.open(files[k]).size for k in ids]
    manifest["width"], manifest["height"] = [str(w) for w, _ in sizes], [str(h) for _, h in sizes]
    pairs = [("original", "rotated_crop"), ("original", "mirror"), ("original", "other")]
    matches = pair_matches(pairs, manifest, PARAMS, cache_dir=str(tmp_path))
    assert set(matches) == set(pairs[:2])  # the different photo has no proof
    m = matches[pairs[0]]
    assert m.pairs.shape[1] == 4 and len(m.pairs) >= m.inliers  # every inlier keypoint, repeats included
    a = np.column_stack([m.pairs[:, :2], np.ones(len(m.pairs))])
    assert np.median(np.linalg.norm(a @ m.transform.T - m.pairs[:, 2:], axis=1)) < 3  # b's own pixels
    mirrored = matches[pairs[1]]
    assert mirrored.mirrored and np.median(np.abs(mirrored.pairs[:, 2] - (sizes[2][0] - mirrored.pairs[:, 0]))) < 3
    row = {"variant": "r", "a": "original", "b": "rotated_crop", "sha_a": "0", "sha_b": "1", "distance": 0.1, "verdict": ""}
    plain = np.asarray(pair_figure(row, manifest, None, thumb_size=128))
    proved = np.asarray(pair_figure(row, manifest, tmp_path / "p.png", thumb_size=128, match=m))
    assert plain.shape == proved.shape and (np.abs(plain.astype(int) - proved).sum(axis=2) > 0).sum() > 500
    queue = pd.DataFrame([{**row, "b": b, "sha_b": str(k)} for k, (_, b) in enumerate(pairs, 1)])
    section, _ = review_section(queue, manifest, variant="r", max_pairs=10, thumb=lambda p, s: ("data:,", ""),
                                rerun="dvc repro", proof=lambda r: ("data:image/jpeg;base64,AA", f"{r.b} proven")
                                if (r.a, r.b) in matches else None)
    data = json.loads(re.search(r'id="review-data">(.*?)</script>', section, re.S).group(1))
    proofs = {section_pair["sha_b"]: section_pair.get("proof_text") for section_pair in data["pairs"]}
    assert proofs == {"1": "rotated_crop proven", "2": "mirror proven", "3": None}
    assert 'id="review-proof"' in section
