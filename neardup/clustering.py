"""DBSCAN over a sweep of eps on a sparse radius-neighbour graph.

The graph is built once for the largest eps; every smaller eps is a filter of its edges, and
DBSCAN runs with ``metric='precomputed'`` on the sparse graph, so memory grows with the number of
neighbours found rather than with N x N.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.cluster import DBSCAN

from neardup.scoring import mutual_knn, pair_graph

log = logging.getLogger(__name__)

GROUP_COLUMNS = ["eps", "group", "id", "label", "distance"]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero). Shape (n, d) -> (n, d) float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def radius_graph(vectors: np.ndarray, *, radius: float, metric: str = "cosine") -> sparse.csr_matrix:
    """Sparse symmetric graph of all pairs closer than ``radius`` (self-loops excluded).

    Parameters
    ----------
    vectors : ndarray, shape (n, d)
    radius : float
        In units of ``metric``: cosine distance ``1 - cos`` or euclidean distance.
    metric : {'cosine', 'euclidean'}
        ``cosine`` works on L2-normalised vectors; ``euclidean`` on the raw vectors (the seed's
        setting).

    Returns
    -------
    csr_matrix, shape (n, n), float64 distances in ``metric`` units; zero distances are stored
    explicitly, so exact copies stay neighbours. Built by blocked exact search, never N x N.
    """
    return pair_graph(vectors, radius=radius, metric=metric)


def _explicit_filter(graph: sparse.csr_matrix, eps: float) -> sparse.csr_matrix:
    coo = graph.tocoo()
    keep = coo.data <= eps
    return sparse.csr_matrix((coo.data[keep] + 0.0, (coo.row[keep], coo.col[keep])), shape=graph.shape)


def dbscan_labels(graph: sparse.csr_matrix, *, eps: float, min_samples: int = 1) -> np.ndarray:
    """DBSCAN cluster labels from a precomputed sparse distance graph.

    Returns
    -------
    ndarray of int, shape (n,): cluster index, -1 for noise.
    """
    return _dbscan_filtered(_explicit_filter(graph, eps), eps=eps, min_samples=min_samples)


def _dbscan_filtered(sub: sparse.csr_matrix, *, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN on a graph already restricted to edges <= eps (``sub`` is left unchanged)."""
    tiny = np.finfo(np.float64).tiny
    # DBSCAN ignores stored zeros only if they are not explicit; keep zero distances by a tiny shift.
    shifted = sparse.csr_matrix((np.maximum(sub.data, tiny), sub.indices, sub.indptr), shape=sub.shape)
    model = DBSCAN(eps=max(eps, tiny), min_samples=min_samples, metric="precomputed")
    return model.fit_predict(shifted)


def groups_for_eps(graph: sparse.csr_matrix, ids, labels, *, eps: float, min_samples: int = 1) -> pd.DataFrame:
    """Duplicate groups at one eps: one row per (group, image); singletons left out.

    Groups are numbered 0, 1, ... in the order of their smallest member id, members sorted by id,
    so the same inputs always give the same table. ``distance`` is the distance from the image to
    its nearest other member of the group.
    """
    ids = np.asarray(ids, dtype=str)
    labels_arr = np.asarray(labels, dtype=str)
    filtered = _explicit_filter(graph, eps)
    cluster = _dbscan_filtered(filtered, eps=eps, min_samples=min_samples)
    sub = filtered.tolil()
    members: dict[int, list[int]] = {}
    for i, c in enumerate(cluster):
        if c >= 0:
            members.setdefault(int(c), []).append(i)
    rows = []
    ordered = sorted((sorted(m, key=lambda i: ids[i]) for m in members.values() if len(m) > 1),
                     key=lambda m: ids[m[0]])
    for group, member in enumerate(ordered):
        inside = set(member)
        for i in member:
            near = [d for j, d in zip(sub.rows[i], sub.data[i]) if j in inside]
            rows.append((float(eps), group, ids[i], labels_arr[i], float(min(near)) if near else float("nan")))
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def graph_pairs(graph: sparse.csr_matrix, ids) -> pd.DataFrame:
    """Every edge of the graph once, as ``a, b, distance`` with ``a < b`` (the candidate pairs)."""
    ids = np.asarray(ids, dtype=str)
    coo = sparse.triu(graph, k=1).tocoo()
    a, b = ids[coo.row], ids[coo.col]
    swap = a > b
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    pairs = pd.DataFrame({"a": a, "b": b, "distance": coo.data.astype(float)})
    return pairs.sort_values(["distance", "a", "b"], kind="stable", ignore_index=True)


def sweep_graph(graph: sparse.csr_matrix, ids, labels, *, eps_values, min_samples: int = 1) -> pd.DataFrame:
    """Groups for every eps of the sweep from one radius graph (built at ``max(eps_values)`` or more).

    Returns
    -------
    DataFrame with columns ``eps, group, id, label, distance``.
    """
    tables = []
    for eps in sorted(float(e) for e in eps_values):
        table = groups_for_eps(graph, ids, labels, eps=eps, min_samples=min_samples)
        log.info("eps=%.4g: %d groups, %d images", eps, table["group"].nunique(), len(table))
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=GROUP_COLUMNS)


def cluster_sweep(vectors: np.ndarray, ids, labels, *, eps_values, metric: str = "cosine",
                  min_samples: int = 1) -> pd.DataFrame:
    """Groups for every eps of the sweep from one radius graph built at ``max(eps_values)``.

    Returns
    -------
    DataFrame with columns ``eps, group, id, label, distance``.
    """
    graph = radius_graph(vectors, radius=max(float(e) for e in eps_values), metric=metric)
    log.info("radius graph: %d images, %d edges", graph.shape[0], graph.nnz // 2)
    return sweep_graph(graph, ids, labels, eps_values=eps_values, min_samples=min_samples)


def cluster_run(vectors: np.ndarray, ids, labels, *, eps_values, metric: str = "cosine", min_samples: int = 1,
                normalize_k: int = 0, mutual_k: int = 0, plant_vectors: np.ndarray | None = None, plant_ids=None,
                plant_truth: pd.DataFrame | None = None, search: str = "exact", nprobe: int = 16,
                block: int = 1024, stats: dict | None = None):
    """Cluster the real images, and the real images with planted copies, from one pair graph.

    The graph is built once over real images and copies; the real images' graph is its sub-matrix
    (neighbourhood scales come from real images only), so the reported groups are exactly those of
    clustering the real images alone, and copies never appear in them.

    Parameters
    ----------
    vectors : ndarray, shape (n, d)
        Descriptors, already whitened / combined with a hash (see :mod:`neardup.scoring`).
    ids, labels : sequences of str, length n
    normalize_k : int
        Neighbourhood normalisation of distances (0: off), see :func:`neardup.scoring.pair_graph`.
    mutual_k : int
        Keep only mutual ``mutual_k``-nearest-neighbour edges (0: keep all), against chaining.
    search, nprobe, block, stats
        Neighbour search, see :func:`neardup.scoring.pair_graph`.
    plant_vectors : ndarray, shape (m, d), optional
    plant_ids : sequence of str, length m
    plant_truth : DataFrame with columns ``id, original, transform``

    Returns
    -------
    groups : DataFrame ``eps, group, id, label, distance`` (real images only)
    pairs : DataFrame ``a, b, distance``: every real pair the decision graph keeps within ``max(eps_values)``
    outcomes : DataFrame from :func:`neardup.planting.planted_outcomes` (empty without copies)
    """
    from neardup.planting import OUTCOME_COLUMNS, planted_outcomes

    n = len(vectors)
    has_plants = plant_vectors is not None and len(plant_vectors) > 0
    everything = np.vstack([vectors, plant_vectors]) if has_plants else vectors
    graph = pair_graph(everything, radius=max(float(e) for e in eps_values), metric=metric,
                       normalize_k=normalize_k, n_reference=n, search=search, nprobe=nprobe, block=block,
                       stats=stats, recall_at=eps_values)
    log.info("pair graph: %d images (%d planted), %d edges", graph.shape[0], graph.shape[0] - n, graph.nnz // 2)

    def decide(g):
        return mutual_knn(g, mutual_k) if mutual_k else g

    real = decide(graph[:n][:, :n].tocsr())
    groups = sweep_graph(real, ids, labels, eps_values=eps_values, min_samples=min_samples)
    pairs = graph_pairs(real, ids)
    if not has_plants:
        return groups, pairs, pd.DataFrame(columns=OUTCOME_COLUMNS)
    all_ids = np.concatenate([np.asarray(ids, dtype=str), np.asarray(plant_ids, dtype=str)])
    all_groups = sweep_graph(decide(graph), all_ids, [""] * len(all_ids), eps_values=eps_values,
                             min_samples=min_samples)
    truth = plant_truth[plant_truth["id"].isin(set(all_ids)) & plant_truth["original"].isin(set(ids))]
    return groups, pairs, planted_outcomes(all_groups, truth, eps_values, real_groups=groups)
