import numpy as np
import pytest
from sklearn.cluster import DBSCAN

from neardup.cluster import groups_for_eps, sweep_graph
from neardup.cluster.scoring import pair_graph
from neardup.search import unit_rows


def cluster_sweep(vectors, ids, labels, *, eps_values, metric):
    """Groups for every eps from one exact pair graph built at the largest eps (as the cluster stage does)."""
    graph = pair_graph(vectors, radius=max(eps_values), metric=metric)
    return sweep_graph(graph, ids, labels, eps_values=eps_values)


def planted(n=300, d=64, n_dups=40, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d)).astype(np.float32)
    src = rng.choice(n, n_dups, replace=False)
    copies = base[src] + noise * rng.normal(size=(n_dups, d)).astype(np.float32)
    exact = base[src[:3]]  # exact copies: distance 0
    return np.vstack([base, copies, exact]), src


@pytest.mark.parametrize("metric, eps_values", [("cosine", [0.001, 0.01, 0.05, 0.3]),
                                                ("euclidean", [0.05, 0.3, 1.0, 6.0])])
def test_sparse_graph_dbscan_equals_plain_dbscan(metric, eps_values):
    vectors, _ = planted()
    graph = pair_graph(vectors, radius=max(eps_values), metric=metric)
    points = unit_rows(vectors) if metric == "cosine" else vectors
    for eps in eps_values:
        plain = DBSCAN(eps=eps, min_samples=1, metric=metric).fit_predict(points.astype(np.float64))
        ids = [f"{i:04d}" for i in range(len(vectors))]
        ours = groups_for_eps(graph, ids, [""] * len(ids), eps=eps)
        # Same partition of non-singleton clusters (cluster numbering may differ).
        plain_sets = {frozenset(np.flatnonzero(plain == c)) for c in set(plain) - {-1}}
        plain_sets = {s for s in plain_sets if len(s) > 1}
        our_sets = {frozenset(int(i) for i in g["id"]) for _, g in ours.groupby("group")}
        assert plain_sets and our_sets == plain_sets, (metric, eps)


def test_graph_is_symmetric_without_self_loops_and_keeps_exact_copies():
    vectors, src = planted()
    graph = pair_graph(vectors, radius=0.01, metric="cosine")
    assert (graph != graph.T).nnz == 0
    assert graph.diagonal().sum() == 0
    n = 300 + 40
    for k in range(3):  # exact copy k of src[k]
        assert graph[n + k, src[k]] == pytest.approx(0.0, abs=1e-6)
        assert graph.has_sorted_indices


def test_groups_table_contract_and_determinism():
    vectors, src = planted()
    ids = [f"img_{i:04d}.jpg" for i in range(len(vectors))]
    labels = ["a" if i % 2 else "b" for i in range(len(vectors))]
    t1 = cluster_sweep(vectors, ids, labels, eps_values=[0.05, 0.01], metric="cosine")
    t2 = cluster_sweep(vectors, ids, labels, eps_values=[0.01, 0.05], metric="cosine")
    assert list(t1.columns) == ["eps", "group", "id", "label", "distance"]
    assert t1.equals(t2)
    at = t1[t1["eps"] == 0.05]
    assert at.groupby("group").size().min() >= 2  # singletons left out
    assert at["group"].nunique() == 40
    # groups numbered in order of their smallest id; distance = nearest other member, within eps
    firsts = at.groupby("group")["id"].min().to_list()
    assert firsts == sorted(firsts)
    assert (at["distance"] <= 0.05).all() and (at["distance"] >= 0).all()


def test_seed_setting_euclidean_raw_vectors():
    vectors, _ = planted(noise=0.01)
    scale = 10 * vectors  # raw euclidean depends on scale; cosine does not
    ids = [str(i) for i in range(len(vectors))]
    cos_a = cluster_sweep(vectors, ids, ids, eps_values=[0.01], metric="cosine")
    cos_b = cluster_sweep(scale, ids, ids, eps_values=[0.01], metric="cosine")
    assert cos_a[["group", "id"]].equals(cos_b[["group", "id"]])
    euc_a = cluster_sweep(vectors, ids, ids, eps_values=[0.5], metric="euclidean")
    euc_b = cluster_sweep(scale, ids, ids, eps_values=[0.5], metric="euclidean")
    assert euc_a["group"].nunique() == 40 and euc_b["group"].nunique() < 40


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_sparse_graph_dbscan_equals_plain_dbscan_on_demo_embeddings(demo_embeddings, metric):
    from neardup.search import knn_distances

    vectors = demo_embeddings
    points = unit_rows(vectors) if metric == "cosine" else vectors
    nearest = np.unique(knn_distances(vectors, 1, metric=metric)[:, 0])
    # from a few pairs to most images in groups; halfway between two distances, off any boundary
    at = (np.array([0.1, 0.3, 0.6]) * (len(nearest) - 1)).astype(int)
    eps_values = ((nearest[at] + nearest[at + 1]) / 2).tolist()
    graph = pair_graph(vectors, radius=max(eps_values), metric=metric)
    if metric == "cosine":  # the approximate search, visiting every cell of this small index, is exact
        approx = pair_graph(vectors, radius=max(eps_values), search="approximate", nprobe=64)
        want, got = graph.tocoo(), approx.tocsr()[graph.tocoo().row, graph.tocoo().col]
        assert approx.nnz == graph.nnz and np.allclose(np.asarray(got).ravel(), want.data, atol=1e-6)
    ids = [f"{i:04d}" for i in range(len(vectors))]
    for eps in eps_values:
        plain = DBSCAN(eps=eps, min_samples=1, metric=metric).fit_predict(points.astype(np.float64))
        plain_sets = {frozenset(np.flatnonzero(plain == c)) for c in set(plain)}
        plain_sets = {s for s in plain_sets if len(s) > 1}
        ours = groups_for_eps(graph, ids, [""] * len(ids), eps=eps)
        assert plain_sets and {frozenset(int(i) for i in g["id"]) for _, g in ours.groupby("group")} == plain_sets


@pytest.fixture(scope="module")
def demo_embeddings(tmp_path_factory, model_cache):
    """Lite0 vectors of a small demo dataset (real photos, planted copies)."""
    from neardup.embed import Embedder
    from neardup.fetch.demo import make_demo

    demo = make_demo(tmp_path_factory.mktemp("demo"), n_distinct=60, n_duplicates=20, n_label_conflicts=0, seed=1)
    return Embedder("efficientnet-lite0", size=96, weights="imagenet", batch_size=16,
                    pooling="avg", cache_dir=model_cache).embed_manifest(demo.manifest).vectors
