"""One bad pair or image never kills verification: degenerate RANSAC input and output give no
transform (real OpenCV, and an estimator made to return NaN), a pair or an image that fails is counted
in ``stats['verify']['errors']`` and keeps its distance, and the folder that crashed the pipeline
(`SVD did not converge` from an all-NaN affine fit) runs through ``find_duplicates``."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import sparse

from conftest import save
from neardup.keypoints import Features, FeatureStore, extract
from neardup.params import VerifyParams
from neardup.verify import fit, match, verify_edges

PARAMS = VerifyParams(enabled=True, max_side=512, max_keypoints=1000, min_side=64, min_inliers=12, min_ratio=0.4,
                      factor=0.1, refute_keypoints=200, glance_patience=1000,
                      min_agreement=0.7)

#: Three matches of which two are the same point: cv2.estimateAffine2D returns an all-NaN matrix.
NAN_SRC = np.float32([[58.928, 52.764], [58.928, 52.764], [181.172, 49.795]])
NAN_DST = np.float32([[135.510, 46.660], [135.510, 46.660], [13.869, 32.233]])


def degenerate_inputs():
    rng = np.random.default_rng(0)
    line = np.column_stack([np.arange(20.0), 2 * np.arange(20.0)]).astype(np.float32)
    same = np.full((20, 2), 7.0, np.float32)
    with_nan = rng.uniform(0, 100, (20, 2)).astype(np.float32)
    with_nan[3] = np.nan
    with_inf = rng.uniform(0, 100, (20, 2)).astype(np.float32)
    with_inf[5, 1] = np.inf
    return {
        "the reported NaN fit": (NAN_SRC, NAN_DST),
        "all points equal": (same, same + 3),
        "all points equal onto spread points": (same, rng.uniform(0, 100, (20, 2)).astype(np.float32)),
        "collinear": (line, line * 0.5 + 4),
        "two points": (np.float32([[0, 0], [10, 10]]), np.float32([[1, 1], [11, 11]])),
        "one point": (np.float32([[0, 0]]), np.float32([[1, 1]])),
        "no points": (np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)),
        "huge coordinates": (rng.uniform(0, 1e30, (20, 2)).astype(np.float32),
                             rng.uniform(0, 1e30, (20, 2)).astype(np.float32)),
        "NaN": (with_nan, with_nan + 1),
        "inf": (with_inf, with_inf * 2),
    }


@pytest.mark.parametrize("case", list(degenerate_inputs()))
def test_fit_survives_degenerate_points(case):
    src, dst = degenerate_inputs()[case]
    transform, keep, n = fit(src, dst, 5.0)
    assert keep.shape == (len(src),) and keep.dtype == bool
    assert transform is None or (np.isfinite(transform).all() and n >= 1)
    if case == "the reported NaN fit":  # two distinct locations: never a proof
        import cv2
        assert not np.isfinite(cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=5.0)[0]).all()
        assert n <= 2


def test_fit_rejects_a_non_finite_or_collapsed_transform_from_the_estimator(monkeypatch):
    import cv2

    rng = np.random.default_rng(1)
    src = rng.uniform(0, 300, (40, 2)).astype(np.float32)
    dst = src * 0.5 + 10
    good, _, n = fit(src, dst, 3.0)
    assert good is not None and n == 40  # the real estimator on a real similarity
    for bad in (np.full((2, 3), np.nan), np.array([[np.inf, 0, 0], [0, 1, 0]]), np.zeros((2, 3)),
                np.array([[1e-9, 0, 5], [0, 1e-9, 5]]), np.ones((3, 3))):
        def estimator(*args, bad=bad, **kwargs):
            return bad, np.ones((len(args[0]), 1), np.uint8)
        monkeypatch.setattr(cv2, "estimateAffinePartial2D", estimator)
        monkeypatch.setattr(cv2, "estimateAffine2D", estimator)
        assert fit(src, dst, 3.0)[0] is None

    def raises(*args, **kwargs):
        raise cv2.error("estimator failed")
    monkeypatch.setattr(cv2, "estimateAffinePartial2D", raises)
    monkeypatch.setattr(cv2, "estimateAffine2D", raises)
    assert fit(src, dst, 3.0)[0] is None


def features(points, descriptors=None, width=200.0):
    points = np.asarray(points, np.float32).reshape(-1, 2)
    if descriptors is None:
        descriptors = np.tile(np.arange(128, dtype=np.uint8), (len(points), 1))
    return Features(points, np.asarray(descriptors, np.uint8), 1.0, width, width, True)


def test_match_survives_degenerate_features():
    rng = np.random.default_rng(2)
    distinct = rng.integers(0, 255, (30, 128)).astype(np.uint8)
    cases = [
        (features(np.full((30, 2), 5.0), distinct), features(np.full((30, 2), 9.0), distinct)),  # all one point
        (features(np.column_stack([np.arange(30), np.arange(30)]), distinct),
         features(np.column_stack([np.arange(30), np.arange(30)]) * 2, distinct)),  # collinear
        (features(np.full((30, 2), np.nan), distinct), features(rng.uniform(0, 99, (30, 2)), distinct)),
        (features(rng.uniform(0, 1e30, (30, 2)), distinct), features(rng.uniform(0, 1e30, (30, 2)), distinct)),
        (features(np.zeros((0, 2))), features(rng.uniform(0, 99, (30, 2)), distinct)),
        (features([[1, 1], [2, 2]], distinct[:2]), features([[1, 1], [2, 2]], distinct[:2])),
    ]
    for k, (a, b) in enumerate(cases):
        m = match(a, b)
        assert m.transform is None or np.isfinite(m.transform).all()
        assert m.proves(PARAMS) == (k == 1)  # 30 collinear points that agree on one similarity do prove it


def test_a_failing_pair_or_image_is_counted_and_keeps_its_distance(photos, tmp_path, monkeypatch, caplog):
    import neardup.verify as verify

    paths = [str(save(photos[k], tmp_path / f"{k}.jpg", quality=90)) for k in ("astronaut", "coffee", "chelsea")]
    paths.append(str(tmp_path / "gone.jpg"))  # listed, then deleted: cannot be read
    copy = np.asarray(Image.fromarray(photos["astronaut"]).resize((300, 300)))
    paths.append(str(save(copy, tmp_path / "copy.jpg", quality=85)))
    rows, cols, dist = [0, 1, 3, 0], [4, 2, 0, 2], [0.3, 0.4, 0.2, 0.5]
    graph = sparse.coo_matrix((dist + dist, (rows + cols, cols + rows)), shape=(5, 5)).tocsr()
    real_match = verify.match

    def flaky(a, b, **kwargs):
        if {round(a.width), round(b.width)} == {600, 451}:  # coffee and chelsea: one bad pair
            raise np.linalg.LinAlgError("SVD did not converge")
        return real_match(a, b, **kwargs)

    monkeypatch.setattr(verify, "match", flaky)
    stats = {}
    with caplog.at_level("WARNING"):
        out, verdicts = verify_edges(graph, paths, [f"k{i}" for i in range(5)], PARAMS, radius=0.6,
                                     cache_dir=str(tmp_path / "cache"), stats=stats)
    assert stats["verify"]["errors"] == 2  # the pair with chelsea, and the unreadable image
    assert out[0, 4] == pytest.approx(0.03)  # the copy is still proven
    assert out[1, 2] == pytest.approx(0.4) and verdicts[1, 2] == 0  # the failed pair keeps its distance
    assert out[0, 3] == pytest.approx(0.2) and verdicts[0, 3] == 0  # so does the unreadable image's pair
    assert "SVD did not converge" in caplog.text and "gone.jpg" in caplog.text


def test_features_are_cached_compactly_and_loaded_a_few_at_a_time(photos, tmp_path):
    """uint8 descriptors and no stored mirror: under 150 KB for 1,000 keypoints; the store holds at
    most ``max_images`` feature sets in memory, whatever the number of images."""
    paths = []
    for k, name in enumerate(sorted(photos)):
        for angle in (0, 90):
            paths.append(str(save(np.asarray(Image.fromarray(photos[name]).rotate(angle, expand=True)),
                                  tmp_path / f"{name}{angle}.jpg", quality=90)))
    content = [f"key{i}" for i in range(len(paths))]
    with FeatureStore(paths, content, PARAMS, cache_dir=str(tmp_path / "cache"), max_images=3) as store:
        store.prepare(range(len(paths)))
        files = sorted((tmp_path / "cache" / "features").rglob("*.npz"))
        assert len(files) == len(paths) and store.extracted == len(paths)
        assert max(f.stat().st_size for f in files) < 150_000
        seen = [store.get(i) for i in range(len(paths))]
        assert len(store._lru) == 3 and store.loads == len(paths)
        assert all(s.descriptors.dtype == np.uint8 and len(s.points) > 200 for s in seen)
    direct = extract(paths[0])
    assert np.array_equal(seen[0].descriptors, direct.descriptors)
    assert np.array_equal(seen[0].mirror_descriptors, direct.mirror_descriptors)


def test_the_folder_that_crashed_the_pipeline_runs(tmp_path):
    """Twelve 256 x 192 JPEGs of colour fields and discs, plus one resized to 200 x 150 (q70) and
    another cropped to (10, 10, 240, 180) (q80): the fit that returned NaN no longer ends the run."""
    from neardup.api import find_duplicates

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    for i in range(12):
        image = Image.new("RGB", (256, 192), tuple(int(c) for c in rng.integers(0, 256, 3)))
        from PIL import ImageDraw
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y, r = rng.integers(20, 236), rng.integers(20, 172), rng.integers(8, 40)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        save(np.asarray(image), folder / f"v{i:02d}.jpg", quality=90)
    Image.open(folder / "v03.jpg").resize((200, 150)).save(folder / "v03_small.jpg", quality=70)
    Image.open(folder / "v05.jpg").crop((10, 10, 240, 180)).save(folder / "v05_crop.jpg", quality=80)
    result = find_duplicates(folder, out=tmp_path / "out", cache={"dir": str(tmp_path / "cache")})
    grouped = {frozenset(g) for g in result.groups.groupby("group")["id"].apply(frozenset)}
    assert frozenset({"v03.jpg", "v03_small.jpg"}) in grouped
    assert frozenset({"v05.jpg", "v05_crop.jpg"}) in grouped
