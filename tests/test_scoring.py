"""Exact blocked neighbour search and the pair scores built on it, checked against dense numpy."""
import numpy as np
import pandas as pd
import pytest

from neardup.cluster import cluster_vectors
from neardup.cluster.scoring import apply_whitening, descriptors, fit_whitening, hybrid_vectors, local_scale, pair_graph
from neardup.search import AUTO_APPROXIMATE_ABOVE, Search, knn_distances, pair_recall, radius_search
from neardup.search.exact import smallest

#: The cluster params cluster_vectors needs, at plain exact cosine.
PLAIN = {"metric": "cosine", "normalize_k": 0, "candidates": 10, "search": "exact", "nprobe": 16, "block": 1024}


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def dense(points, metric):
    if metric == "cosine":
        p = unit(points.astype(np.float64))
        return 1.0 - p @ p.T
    diff = points[:, None, :].astype(np.float64) - points[None, :, :]
    return np.sqrt((diff ** 2).sum(-1))


@pytest.fixture
def points():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(150, 24))
    return np.vstack([base, base[:30] + 0.05 * rng.normal(size=(30, 24))]).astype(np.float32)


@pytest.mark.parametrize("metric, radius", [("cosine", 0.8), ("euclidean", 7.0)])
@pytest.mark.parametrize("block", [7, 1024])
def test_radius_search_matches_dense(points, metric, radius, block):
    full = dense(points, metric)
    radii = np.linspace(0.5, 1.0, len(points)) * radius  # per-row radius
    rows, cols, dist = radius_search(points, radii, metric=metric, block=block)
    want = {(i, j) for i, j in zip(*np.nonzero(full <= radii[:, None])) if i != j}
    got = set(zip(rows.tolist(), cols.tolist()))
    # float32 round-off may only flip pairs sitting on the boundary
    assert got ^ want <= {(i, j) for i, j in got ^ want if abs(full[i, j] - radii[i]) < 1e-4}
    assert len(got) > 4 * len(points)  # far more than the 30 planted pairs
    assert np.allclose(dist, full[rows, cols], atol=1e-4)


def test_knn_distances_match_dense_with_and_without_reference(points):
    full = dense(points, "cosine")
    np.fill_diagonal(full, np.inf)
    assert np.allclose(knn_distances(points, 5, block=16), np.sort(full, axis=1)[:, :5], atol=1e-5)
    ref, queries = points[:100], points[100:]
    cross = dense(np.vstack([queries, ref]), "cosine")[:len(queries), len(queries):]
    assert np.allclose(knn_distances(queries, 3, reference=ref), np.sort(cross, axis=1)[:, :3], atol=1e-5)
    assert np.isinf(knn_distances(points[:3], 5)[:, 2:]).all()  # only 2 others exist


def test_whitening_decorrelates_and_shrinkage_tends_to_cosine():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8)) * np.array([10, 5, 3, 1, 1, 0.5, 0.2, 0.1]) + 3.0
    mean, proj = fit_whitening(x, shrinkage=1e-9)
    white = apply_whitening(x, mean, proj)
    cov = np.cov(white.T, bias=True)
    assert np.allclose(cov[:7, :7], np.eye(7), atol=0.05)  # (unit-normalised input loses one dimension)
    # strong shrinkage keeps cosine geometry: order of pair distances nearly unchanged
    mean, proj = fit_whitening(x[:200], shrinkage=1e6)
    shrunk = dense(apply_whitening(x[:200], mean, proj), "cosine")
    plain = dense(unit(x[:200]) - unit(x[:200]).mean(0), "cosine")
    assert np.allclose(shrunk, plain, atol=1e-3)
    with pytest.raises(ValueError, match="shrinkage"):
        fit_whitening(x, shrinkage=0)


def test_hybrid_cosine_is_the_weighted_mean_of_both_cosines(points):
    rng = np.random.default_rng(2)
    hashes = np.sign(rng.normal(size=(len(points), 64))).astype(np.float32)
    mixed = hybrid_vectors(points, hashes, hash_weight=0.3)
    want = 0.7 * (1 - dense(points, "cosine")) + 0.3 * (1 - dense(hashes, "cosine"))
    assert np.allclose(mixed @ mixed.T, want, atol=1e-5)
    assert np.allclose(descriptors(points, hashes=hashes, hash_weight=0.3), mixed)
    with pytest.raises(ValueError, match="hash_weight"):
        hybrid_vectors(points, hashes, hash_weight=1.0)


def test_normalised_graph_matches_dense_formula(points):
    k, radius = 4, 0.25
    full = dense(points, "cosine")
    others = np.sort(np.where(np.eye(len(points), dtype=bool), np.inf, full), axis=1)
    scale = others[:, k - 1:2 * k - 1].mean(1)
    assert np.allclose(local_scale(points, k=k), scale, atol=1e-5)
    norm = np.maximum(full + np.median(scale) - (scale[:, None] + scale[None, :]) / 2, 0)
    np.fill_diagonal(norm, np.inf)
    want = norm <= radius
    near_boundary = np.abs(norm - radius) < 1e-4
    got = pair_graph(points, radius=radius, normalize_k=k).tocoo()
    got_set = set(zip(got.row.tolist(), got.col.tolist()))
    want_set = set(zip(*np.nonzero(want)))
    assert {p for p in got_set ^ want_set if not near_boundary[p]} == set()
    assert np.allclose(got.data, norm[got.row, got.col], atol=1e-4)


def test_normalisation_ranks_an_isolated_copy_above_a_crowded_series():
    rng = np.random.default_rng(4)
    centre = rng.normal(size=32)
    series = centre + 0.25 * rng.normal(size=(12, 32))  # look-alikes: all close to each other
    far = rng.normal(size=(60, 32)) * 3
    lone = rng.normal(size=32) * 3
    copy = lone + 1.2 * rng.normal(size=32)  # a real copy, a little farther apart than the series
    points = np.vstack([series, far, lone, copy]).astype(np.float32)
    a, b = len(points) - 2, len(points) - 1
    plain = pair_graph(points, radius=2.0).toarray()
    norm = pair_graph(points, radius=2.0, normalize_k=3).toarray()
    series_plain = plain[:12, :12][~np.eye(12, dtype=bool)]
    series_norm = norm[:12, :12][~np.eye(12, dtype=bool)]
    assert plain[a, b] > np.median(series_plain)  # plain cosine: the series looks more duplicated
    assert norm[a, b] < series_norm.min()  # normalised: the copy comes first


@pytest.mark.parametrize("options", [{}, {"normalize_k": 3}, {"block": 7},
                                     {"normalize_k": 3, "search": "approximate"}])
def test_planted_copies_never_change_the_real_groups(points, options):
    ids = [f"img{i:03d}" for i in range(len(points))]
    eps = [0.05, 0.2, 0.4]
    options = {**PLAIN, **options}
    alone, pairs_alone, _ = cluster_vectors(points, ids, [""] * len(ids), eps_values=eps, **options)
    rng = np.random.default_rng(3)
    copies = points[:20] + 0.01 * rng.normal(size=(20, points.shape[1])).astype(np.float32)
    truth = pd.DataFrame({"id": [f"planted/{i}" for i in range(20)], "original": ids[:20], "transform": "x"})
    groups, pairs, outcomes = cluster_vectors(points, ids, [""] * len(ids), eps_values=eps, plant_vectors=copies,
                                          plant_ids=truth["id"].tolist(), plant_truth=truth, **options)
    # same members and pairs; distances equal up to float32 round-off of differently blocked products
    key = ["eps", "group", "id"]
    assert len(alone) and groups[key].equals(alone[key]) and pairs[["a", "b"]].equals(pairs_alone[["a", "b"]])
    assert np.allclose(groups["distance"], alone["distance"], atol=1e-6)
    assert np.allclose(pairs["distance"], pairs_alone["distance"], atol=1e-6)
    assert outcomes["found"].astype(bool).any()


def test_approximate_search_reports_its_recall_and_finds_the_close_pairs():
    rng = np.random.default_rng(5)
    base = rng.normal(size=(4000, 64)).astype(np.float32)
    copies = base[:400] + 0.15 * rng.normal(size=(400, 64)).astype(np.float32)  # cosine distance ~0.01
    points = np.vstack([base, copies])
    exact_stats, approx_stats = {}, {}
    exact = pair_graph(points, radius=0.05, stats=exact_stats)
    approx = pair_graph(points, radius=0.05, search="approximate", nprobe=8, stats=approx_stats)
    assert exact_stats == {"search": "exact", "n_edges": exact.nnz}
    assert approx_stats["search"] == "approximate" and approx_stats["search_recall"] >= 0.95
    found = set(zip(*approx.nonzero())) & set(zip(*exact.nonzero()))
    assert len(found) / exact.nnz >= 0.95 and set(zip(*approx.nonzero())) <= set(zip(*exact.nonzero()))
    assert np.allclose(approx[approx.nonzero()], exact[approx.nonzero()], atol=1e-5)
    # normalised through the approximate index, the planted copies are still found
    copy_pairs = {(i, 4000 + i) for i in range(400)}
    norm_exact = set(zip(*pair_graph(points, radius=0.05, normalize_k=3).nonzero()))
    norm_approx = set(zip(*pair_graph(points, radius=0.05, normalize_k=3, search="approximate",
                                      nprobe=8).nonzero()))
    # (approximate neighbourhood scales cost some: 275 of 327 here, on unstructured random vectors)
    assert len(copy_pairs & norm_exact) > 300 and len(copy_pairs & norm_approx) >= 0.8 * len(copy_pairs & norm_exact)
    # auto stays exact at this size; the approximate search refuses euclidean
    auto = {}
    pair_graph(points[:100], radius=0.05, search="auto", stats=auto)
    assert auto["search"] == "exact"
    with pytest.raises(ValueError, match="cosine"):
        pair_graph(points[:100], radius=1.0, metric="euclidean", search="approximate")


def test_approximate_index_returns_exact_distances_and_keeps_no_copy():
    from neardup.search.approximate import ApproximateIndex

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(40, 32))
    points = unit((centres[rng.integers(40, size=3000)] + 0.5 * rng.normal(size=(3000, 32))).astype(np.float32))
    index = ApproximateIndex(points, nprobe=4, seed=0)
    assert index.nlist == 76 and np.shares_memory(index.reference, points)  # unit float32 rows: not copied
    full = dense(points, "cosine")
    np.fill_diagonal(full, np.inf)
    # every neighbour it returns is a real one at its exact distance, so the k-th distance is never
    # below the exact k-th, and equal for almost every row
    approx_knn, exact_knn = index.knn_distances(points, 5), np.sort(full, axis=1)[:, :5]
    assert (approx_knn >= exact_knn - 1e-5).all() and np.isclose(approx_knn, exact_knn, atol=1e-5).all(1).mean() > 0.9
    rows, cols, dist = index.radius_search(points, 0.15)
    assert np.allclose(dist, full[rows, cols], atol=1e-5) and len(set(zip(rows, cols))) == len(rows)
    want = set(zip(*np.nonzero(full <= 0.15)))
    assert len(want) > 1000 and len(want & set(zip(rows.tolist(), cols.tolist()))) >= 0.95 * len(want)
    # the same search again gives the same pairs (seeded)
    again = ApproximateIndex(points, nprobe=4, seed=0).radius_search(points, 0.15)
    assert np.array_equal(again[0], rows) and np.array_equal(again[1], cols)


def test_whitening_and_hybrid_in_row_blocks_equal_one_pass(points, monkeypatch):
    import neardup.cluster.scoring as scoring

    hashes = np.where(np.random.default_rng(4).random((len(points), 16)) < 0.5, -1.0, 1.0).astype(np.float32)
    one_pass = descriptors(points, whiten=1.0, hashes=hashes, hash_weight=0.2, fit_rows=150)
    monkeypatch.setattr(scoring, "ROW_BLOCK", 7)  # 180 rows in 26 blocks
    blocked = descriptors(points, whiten=1.0, hashes=hashes, hash_weight=0.2, fit_rows=150)
    assert blocked.dtype == np.float32 and blocked.shape == (180, 40)
    assert np.allclose(blocked, one_pass, atol=1e-6) and not np.allclose(blocked[:, :24], unit(points), atol=0.05)


def test_search_recall_is_reported_per_eps_and_matches_the_exact_graph():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(40, 32))
    points = unit((centres[rng.integers(40, size=3000)] + 0.5 * rng.normal(size=(3000, 32))).astype(np.float32))
    stats = {}
    # ~75 points a cluster, all within the radius: no bound on the neighbours kept, to compare with all pairs
    approx = pair_graph(points, radius=0.3, search="approximate", nprobe=2, stats=stats, recall_at=[0.05, 0.1, 0.3],
                        max_neighbours=0)
    exact = pair_graph(points, radius=0.3, max_neighbours=0)
    by_eps = stats["search_recall_by_eps"]
    assert set(by_eps) == {"0.05", "0.1", "0.3"} and by_eps["0.3"] == stats["search_recall"]
    assert 0.5 < by_eps["0.3"] < 0.99 and by_eps["0.05"] >= by_eps["0.3"]  # close pairs are found more often
    # on every row instead of a sample, the figure is the share of the exact graph's pairs found
    a, e = approx.tocoo(), exact.tocoo()
    got = pair_recall(points, a.row, a.col, [0.1, 0.3], radius=0.3, sample=len(points))
    found = set(zip(a.row.tolist(), a.col.tolist()))
    for t in (0.1, 0.3):
        want = [(i, j) for i, j, d in zip(e.row.tolist(), e.col.tolist(), e.data) if d <= t]
        assert got[t] == pytest.approx(sum(p in found for p in want) / len(want), abs=1e-3)


def test_smallest_keeps_the_k_smallest_of_each_row():
    values = np.random.default_rng(6).random((20, 9))
    for k in (1, 4, 9):
        assert np.array_equal(np.sort(smallest(values, k), axis=1), np.sort(values, axis=1)[:, :k])


@pytest.mark.parametrize("mode", ["exact", "approximate"])
def test_search_queries_extra_rows_against_the_real_rows_only(points, mode):
    n_ref = 120
    real, extra = points[:n_ref], points[n_ref:]
    # nprobe above the number of cells: the approximate index visits every cell, so it is exact too
    search = Search(points, n_ref=n_ref, mode=mode, nprobe=1000, block=16)
    assert search.mode == mode and (search.index is None) == (mode == "exact")
    knn = search.knn(3)
    want = np.vstack([knn_distances(real, 3), knn_distances(extra, 3, reference=real)])
    assert knn.shape == (len(points), 3) and np.allclose(knn, want, atol=1e-5)
    full = dense(points, "cosine")
    rows, cols, dist = search.radius(np.full(len(points), 0.7), "cosine")
    assert np.allclose(dist, full[rows, cols], atol=1e-4)
    got = {(min(r, c), max(r, c)) for r, c in zip(rows.tolist(), cols.tolist())}
    if mode == "approximate":  # the index holds the real rows only
        assert all(a < n_ref for a, _ in got)
    got = {(a, b) for a, b in got if a < n_ref}  # every pair with a real image: real-real and copy-real
    want = {(a, b) for a, b in zip(*np.nonzero(np.triu(full <= 0.7, k=1))) if a < n_ref}
    assert len(want) > 100 and {(a, b) for a, b in got ^ want if abs(full[a, b] - 0.7) >= 1e-4} == set()


def test_auto_search_switches_to_the_index_above_the_threshold(points):
    assert AUTO_APPROXIMATE_ABOVE == 100_000
    assert Search(points, n_ref=len(points), mode="auto", nprobe=4, block=64).mode == "exact"
    assert Search(points, n_ref=AUTO_APPROXIMATE_ABOVE, mode="auto", nprobe=4, block=64).mode == "exact"


def test_each_image_keeps_at_most_its_nearest_pairs_and_a_burst_stays_one_group():
    """200 near-identical frames, all within the radius of one another: a pair is kept when it is among
    one of its images' MAX_NEIGHBOURS nearest, so the graph holds at most 64 x N pairs (not N^2 / 2),
    and DBSCAN still makes one group of them."""
    from neardup.cluster import dbscan_labels
    from neardup.cluster.scoring import MAX_NEIGHBOURS

    rng = np.random.default_rng(5)
    burst = unit((rng.normal(size=(1, 32)) + 0.05 * rng.normal(size=(200, 32))).astype(np.float32))
    others = unit(rng.normal(size=(300, 32)).astype(np.float32))
    points = np.vstack([burst, others])
    bounded = pair_graph(points, radius=0.5)
    full = pair_graph(points, radius=0.5, max_neighbours=0)
    assert np.diff(full.indptr)[:200].min() == 199  # unbounded: every frame with every other
    assert bounded.nnz // 2 <= MAX_NEIGHBOURS * len(points) and bounded.nnz < full.nnz / 2
    labels = dbscan_labels(bounded, eps=0.5)
    assert len(set(labels[:200])) == 1 and not set(labels[:200]) & set(labels[200:])
