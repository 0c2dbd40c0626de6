"""cluster: scored candidate pairs and DBSCAN groups for every eps of the sweep.

The pair graph is built once for the largest eps (:func:`neardup.cluster.scoring.scored_graph`);
every smaller eps is a filter of its edges, and DBSCAN (``min_samples=1``: every image is a core
point, so groups are the connected parts of the eps graph) runs with ``metric='precomputed'`` on
the sparse graph, so memory grows with the neighbours found rather than with N x N.

Planted copies are clustered together with the real images; what happened to each
(:func:`planted_outcomes`) is the measured recall on the user's own data.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.cluster import DBSCAN

from neardup.cluster.scoring import scored_graph, symmetric_graph
from neardup.contract import GROUP_COLUMNS, OUTCOME_COLUMNS, PAIR_COLUMNS, groups_at

log = logging.getLogger(__name__)


def _explicit_filter(graph: sparse.csr_matrix, eps: float) -> sparse.csr_matrix:
    coo = graph.tocoo()
    keep = coo.data <= eps
    return sparse.csr_matrix((coo.data[keep] + 0.0, (coo.row[keep], coo.col[keep])), shape=graph.shape)


def dbscan_labels(graph: sparse.csr_matrix, *, eps: float) -> np.ndarray:
    """DBSCAN (``min_samples=1``) labels from a precomputed sparse distance graph, shape (n,)."""
    sub = _explicit_filter(graph, eps)
    tiny = np.finfo(np.float64).tiny
    # DBSCAN ignores stored zeros only if they are not explicit; keep zero distances by a tiny shift.
    shifted = sparse.csr_matrix((np.maximum(sub.data, tiny), sub.indices, sub.indptr), shape=sub.shape)
    return DBSCAN(eps=max(eps, tiny), min_samples=1, metric="precomputed").fit_predict(shifted)


def groups_for_eps(graph: sparse.csr_matrix, ids, labels, *, eps: float) -> pd.DataFrame:
    """Duplicate groups at one eps: one row per (group, image); singletons left out.

    Groups are numbered 0, 1, ... in the order of their smallest member id, members sorted by id,
    so the same inputs always give the same table. ``distance`` is the distance from the image to
    its nearest other member of the group.
    """
    ids = np.asarray(ids, dtype=str)
    cluster = dbscan_labels(graph, eps=eps)
    if not len(cluster):
        return pd.DataFrame(columns=GROUP_COLUMNS)
    grouped = np.flatnonzero(np.bincount(cluster)[cluster] > 1)
    by_id = grouped[np.argsort(ids[grouped], kind="stable")]
    # a group's rank: the position of its smallest member id among the grouped images, sorted by id
    found, first = np.unique(cluster[by_id], return_index=True)
    rank = np.zeros(cluster.max() + 1, np.int64)
    rank[found[np.argsort(first, kind="stable")]] = np.arange(len(found))
    members = by_id[np.argsort(rank[cluster[by_id]], kind="stable")]
    # every edge within eps joins two images of one group (min_samples=1): the nearest other member
    # is the row's smallest distance
    sub = _explicit_filter(graph, eps)
    near = np.full(graph.shape[0], np.nan)
    filled = np.flatnonzero(np.diff(sub.indptr))
    if len(filled):
        near[filled] = np.minimum.reduceat(sub.data, sub.indptr[filled])
    return pd.DataFrame({"eps": np.full(len(members), float(eps)), "group": rank[cluster[members]],
                         "id": ids[members].astype(object),
                         "label": np.asarray(labels, dtype=str)[members].astype(object),
                         "distance": near[members]}, columns=GROUP_COLUMNS)


def graph_pairs(graph: sparse.csr_matrix, ids, nearest: sparse.csr_matrix | None = None,
                verdicts: sparse.csr_matrix | None = None) -> pd.DataFrame:
    """Every edge of the graph once, as ``a, b, distance, nearest, verified`` with ``a < b`` (the
    candidate pairs).

    ``nearest`` (bool, the graph's entries): whether the pair is among one image's nearest
    neighbours (see :func:`neardup.cluster.scoring.scored_graph`); all False when not given.
    ``verdicts`` (int, 1 proven / -1 refuted, from :func:`neardup.verify.verify_edges`): the
    ``verified`` column; all 0 when not given.
    """
    ids = np.asarray(ids, dtype=str)
    coo = sparse.triu(graph, k=1).tocoo()
    rank = np.empty(len(ids), np.int64)
    rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))
    swap = rank[coo.row] > rank[coo.col]  # a > b as ids; the ids as shared str objects, 8 bytes a pair each
    ids = ids.astype(object)
    a, b = ids[np.where(swap, coo.col, coo.row)], ids[np.where(swap, coo.row, coo.col)]
    near = (np.zeros(len(a), bool) if nearest is None or not len(a)
            else np.asarray(nearest.tocsr()[coo.row, coo.col]).ravel().astype(bool))
    verified = (np.zeros(len(a), int) if verdicts is None or not len(a)
                else np.asarray(verdicts.tocsr()[coo.row, coo.col]).ravel().astype(int))
    pairs = pd.DataFrame({"a": a, "b": b, "distance": coo.data.astype(float), "nearest": near.astype(int),
                          "verified": verified}, columns=PAIR_COLUMNS)
    return pairs.sort_values(["distance", "a", "b"], kind="stable", ignore_index=True)


def same_content_edges(content) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(rows, cols)`` joining images with the same content key: each image to the first
    of its kind (a star, not a clique, so many copies of one image cost one edge each); empty keys
    join nothing."""
    content = np.asarray(content, dtype=str)
    order = np.flatnonzero(content != "")  # an empty key: content unknown
    order = order[np.argsort(content[order], kind="stable")]
    keys = content[order]
    starts = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)
    head = order[np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))] if len(keys) else order
    copy = head != order
    return head[copy].astype(np.int64), order[copy].astype(np.int64)


def with_exact_copies(graph: sparse.csr_matrix, nearest: sparse.csr_matrix, content):
    """``graph`` and ``nearest`` with every pair of equal content keys (first rows) at distance 0."""
    rows, cols = same_content_edges(content)
    if not len(rows):
        return graph, nearest
    log.info("%d image(s) with the same content as another: distance 0", len(rows))
    coo, near = graph.tocoo(), nearest.tocsr()
    flags = np.asarray(near[coo.row, coo.col]).ravel().astype(bool) if coo.nnz else np.zeros(0, bool)
    return symmetric_graph(np.concatenate([coo.row, rows]), np.concatenate([coo.col, cols]),
                           np.concatenate([coo.data, np.zeros(len(rows))]), graph.shape[0],
                           flags=np.concatenate([flags, np.ones(len(rows), bool)]))


def sweep_graph(graph: sparse.csr_matrix, ids, labels, *, eps_values) -> pd.DataFrame:
    """Groups for every eps of the sweep from one graph built at ``max(eps_values)`` or more.

    Returns
    -------
    DataFrame with columns ``eps, group, id, label, distance``.
    """
    tables = []
    for eps in sorted(float(e) for e in eps_values):
        table = groups_for_eps(graph, ids, labels, eps=eps)
        log.info("eps=%.4g: %d groups, %d images", eps, table["group"].nunique(), len(table))
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=GROUP_COLUMNS)


def planted_outcomes(groups: pd.DataFrame, truth: pd.DataFrame, eps_values, real_graph=None,
                     real_ids=None, real_verdicts=None) -> pd.DataFrame:
    """What happened to each planted copy at each eps.

    Parameters
    ----------
    groups : DataFrame with columns ``eps, group, id`` from clustering real images and copies together
    truth : DataFrame with columns ``id, original, transform`` (the planted copies)
    eps_values : sequence of float
        The sweep (an eps where nothing grouped still gets its rows).
    real_graph : csr_matrix, shape (n, n), optional
        The real images' pair graph, ``real_ids`` its row ids: images within eps of the original
        *directly* (its own duplicates) are family; images only chained in through others are not.
    real_verdicts : csr_matrix, shape (n, n), optional
        Geometric verification's verdicts on the real images' pairs (1: proven): images proven
        copies of a family member are family too, as are images with the same content.

    Returns
    -------
    DataFrame with columns :data:`neardup.contract.OUTCOME_COLUMNS`: ``found`` when the copy shares
    a group with its original, ``with_unrelated`` when its group holds any image outside the family:
    the original, the images directly within eps of it, the images with the same content as these or
    proven copies of them, and the copies made from those.
    """
    siblings = {}
    for copy, original in zip(truth["id"], truth["original"]):
        siblings.setdefault(original, {original}).add(copy)
    row_of = {} if real_ids is None else {i: r for r, i in enumerate(np.asarray(real_ids, dtype=str))}
    real_ids = None if real_ids is None else np.asarray(real_ids, dtype=str)
    graph = None if real_graph is None else real_graph.tocsr()
    proven = None
    if real_verdicts is not None:
        proven = real_verdicts.tocsr().astype(np.int8)
        proven.data = (proven.data == 1).astype(np.int8)
        proven.eliminate_zeros()

    def neighbours(r: int, eps: float) -> np.ndarray:
        start, stop = graph.indptr[r], graph.indptr[r + 1]
        return graph.indices[start:stop][graph.data[start:stop] <= eps + 1e-12]

    def same(r: int) -> list:
        """Images with the same content as row ``r`` (joined at distance 0) or proven copies of it."""
        out = neighbours(r, 0.0).tolist()
        return out if proven is None else out + proven.indices[proven.indptr[r]:proven.indptr[r + 1]].tolist()

    def direct(original: str, eps: float) -> set:
        r = row_of.get(original)
        if graph is None or r is None:
            return {original}
        family = {r, *neighbours(r, eps).tolist()}
        todo = sorted(family)
        while todo:  # images with a family member's content, or proven copies of one, are family
            for j in same(todo.pop()):
                if j not in family:
                    family.add(j)
                    todo.append(j)
        return set(real_ids[sorted(family)].tolist())

    rows = []
    for eps in sorted(eps_values):
        at = groups_at(groups, eps)
        group_of = dict(zip(at["id"], at["group"]))
        members = at.groupby("group")["id"].apply(set).to_dict()
        for copy, original, transform in zip(truth["id"], truth["original"], truth["transform"]):
            g = group_of.get(copy)
            found = g is not None and group_of.get(original) == g
            unrelated = False
            if g is not None:
                family = set().union(*(siblings.get(o, {o}) for o in direct(original, eps)))
                unrelated = bool(members[g] - family)
            rows.append((float(eps), copy, original, transform, found, unrelated))
    return pd.DataFrame(rows, columns=OUTCOME_COLUMNS)


def cluster_vectors(vectors: np.ndarray, ids, labels, *, eps_values, metric: str, normalize_k: int, candidates: int,
                    search: str, nprobe: int, block: int, content=None, plant_vectors: np.ndarray | None = None,
                    plant_ids=None, plant_truth: pd.DataFrame | None = None, stats: dict | None = None, verify=None,
                    executor=None):
    """Cluster the real images, and the real images with planted copies, from one pair graph.

    The graph is built once over real images and copies; the real images' graph is its sub-matrix
    (neighbourhood scales come from real images only), so the reported groups are exactly those of
    clustering the real images alone, and copies never appear in them.

    Parameters
    ----------
    vectors : ndarray, shape (n, d)
        Descriptors, already whitened / combined with a hash (see :mod:`neardup.cluster.scoring`).
    ids, labels : sequences of str, length n
    eps_values : sequence of float
    metric, normalize_k, candidates, search, nprobe, block, stats, executor
        See :func:`neardup.cluster.scoring.scored_graph` (``cluster`` params; ``executor``: where the
        search runs, threads here or Dask workers).
    content : sequence of str, length n, optional
        A content key per image (the decoded pixels' hash): images with the same key are
        duplicates at distance 0 at every eps, whatever their vectors and neighbourhoods.
    plant_vectors : ndarray, shape (m, d), optional
    plant_ids : sequence of str, length m
    plant_truth : DataFrame with columns ``id, original, transform``
    verify : callable, optional
        ``verify(graph, radius) -> (graph, verdicts)``: the graph (real images then copies) with pairs
        moved by geometric verification, and its verdicts (:func:`neardup.verify.verify_edges`),
        before any grouping.

    Returns
    -------
    groups : DataFrame ``eps, group, id, label, distance`` (real images only)
    pairs : DataFrame ``a, b, distance, nearest, verified``: every real pair within ``max(eps_values)``
        and each image's ``candidates`` nearest neighbours
    outcomes : DataFrame from :func:`planted_outcomes` (empty without copies)
    """
    n = len(vectors)
    has_plants = plant_vectors is not None and len(plant_vectors) > 0
    everything = np.vstack([vectors, plant_vectors]) if has_plants else vectors
    graph, nearest = scored_graph(everything, radius=max(float(e) for e in eps_values), candidates=candidates,
                                  metric=metric, normalize_k=normalize_k, n_reference=n, search=search,
                                  nprobe=nprobe, block=block, stats=stats, recall_at=eps_values, executor=executor)
    if content is not None:
        graph, nearest = with_exact_copies(graph, nearest, content)
    verdicts = None
    if verify is not None:
        graph, verdicts = verify(graph, max(float(e) for e in eps_values))
    log.info("pair graph: %d images (%d planted), %d edges", graph.shape[0], graph.shape[0] - n, graph.nnz // 2)
    real = graph[:n][:, :n].tocsr()
    groups = sweep_graph(real, ids, labels, eps_values=eps_values)
    pairs = graph_pairs(real, ids, nearest[:n][:, :n], None if verdicts is None else verdicts[:n][:, :n])
    if not has_plants:
        return groups, pairs, pd.DataFrame(columns=OUTCOME_COLUMNS)
    all_ids = np.concatenate([np.asarray(ids, dtype=str), np.asarray(plant_ids, dtype=str)])
    all_groups = sweep_graph(graph, all_ids, [""] * len(all_ids), eps_values=eps_values)
    truth = plant_truth[plant_truth["id"].isin(set(all_ids)) & plant_truth["original"].isin(set(ids))]
    return groups, pairs, planted_outcomes(all_groups, truth, eps_values, real_graph=real, real_ids=ids,
                                           real_verdicts=None if verdicts is None else verdicts[:n][:, :n])
