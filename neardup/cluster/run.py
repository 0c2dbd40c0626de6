"""One clustering run as the ``cluster`` stage and :func:`neardup.find_duplicates` make it: descriptors
from the vectors (whitening and the hash mix for CNN runs), the pair graph and DBSCAN over the sweep,
and the run's files (:mod:`neardup.contract`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from neardup.cluster import cluster_run
from neardup.cluster.scoring import descriptors
from neardup.contract import GROUPS, PAIRS, PLANTED, STATS, Embeddings, UserError, content_keys, write_table
from neardup.search.tasks import search_runner
from neardup.params import ClusterParams, ParamsError


def cluster_embeddings(emb: Embeddings, plants: Embeddings, manifest: pd.DataFrame, plant_truth: pd.DataFrame, *,
                       params: ClusterParams, baseline: bool, hashes: Embeddings | None = None,
                       plant_hashes: Embeddings | None = None, source: str = "the embeddings",
                       plant_manifest: pd.DataFrame | None = None, cache_dir: str = "", engine=None):
    """Cluster one run's real images (with its planted copies alongside).

    Parameters
    ----------
    emb, plants : Embeddings
        The run's vectors of the real images and of the planted copies.
    manifest : DataFrame
        The dataset manifest (``id, label_name, sha256``, and ``pixel_sha256`` when fetch wrote it).
    plant_truth : DataFrame with columns ``id, original, transform``
    params : ClusterParams
    baseline : bool
        Score the vectors as they are (hash baselines): no whitening, hash mix or normalisation.
    hashes, plant_hashes : Embeddings, optional
        ``cluster.hash`` of the real images and copies, mixed in at ``cluster.hash_weight``.
    source : str
        Named in the error when nothing could be embedded.
    plant_manifest : DataFrame, optional
        The copies' manifest (``id, path, sha256``): with ``cluster.verify.enabled``, every pair within
        the largest eps is verified geometrically, copies included (CNN runs only).
    cache_dir : str
        ``cache.dir``: keypoints are kept there by image content ('' = no cache).
    engine : EngineParams, optional
        Where the pair search runs (:func:`neardup.search.tasks.search_runner`); default here.

    Returns
    -------
    groups, pairs, outcomes : DataFrames of :func:`neardup.cluster.cluster_run`
    stats : dict, the run's ``stats.json``
    """
    n = len(emb.ids)
    if not n:
        why = f" (e.g. {emb.skipped['id'].iloc[0]}: {emb.skipped['reason'].iloc[0]})" if len(emb.skipped) else ""
        raise UserError(f"{source} holds no vectors: no image could be read{why}")
    vectors = np.vstack([emb.vectors, plants.vectors])
    if not baseline:
        mixed = None
        if params.hash_weight:
            if hashes is None or plant_hashes is None:
                raise ParamsError(f"cluster.hash_weight is {params.hash_weight} but no hash was given: "
                                  f"list cluster.hash in hash.methods, or set cluster.hash_weight: 0")
            mixed = np.vstack([hashes.rows_for(emb.ids), plant_hashes.rows_for(plants.ids)])
        vectors = descriptors(vectors, whiten=params.whiten, hashes=mixed, hash_weight=params.hash_weight, fit_rows=n)
    rows = manifest.set_index("id").loc[emb.ids]
    stats: dict = {}
    verify = None
    if params.verify.enabled and not baseline:
        if len(plants.ids) and plant_manifest is None:
            raise ValueError("cluster.verify needs the copies' manifest (plant_manifest)")
        copies = plant_manifest.set_index("id").loc[plants.ids] if len(plants.ids) else rows.iloc[:0]
        paths = np.concatenate([rows["path"].to_numpy(dtype=str), copies["path"].to_numpy(dtype=str)])
        content = np.concatenate([content_keys(rows), content_keys(copies)])

        def verify(graph, radius):
            from neardup.verify import verify_edges

            return verify_edges(graph, paths, content, params.verify, radius=radius, cache_dir=cache_dir,
                                n_reference=len(rows), stats=stats)
    with search_runner(engine, cache_dir) as runner:
        groups, pairs, outcomes = cluster_run(
            vectors[:n], emb.ids, rows["label_name"].to_numpy(), eps_values=params.eps, metric=params.metric,
            normalize_k=0 if baseline else params.normalize_k, candidates=params.candidates, search=params.search,
            nprobe=params.nprobe, block=params.block_size, content=content_keys(rows), plant_vectors=vectors[n:],
            plant_ids=plants.ids, plant_truth=plant_truth, stats=stats, verify=verify, runner=runner)
    stats.update(eps=list(params.eps), input_size=emb.input_size, n_embedded=n,
                 skipped_ids=sorted(emb.skipped["id"].astype(str)))
    return groups, pairs, outcomes, stats


def write_cluster_outputs(out: Path, groups: pd.DataFrame, pairs: pd.DataFrame, outcomes: pd.DataFrame,
                          stats: dict) -> None:
    """A run's cluster folder: ``groups.csv``, ``pairs.csv``, ``planted.csv`` and ``stats.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(groups, out / GROUPS)
    write_table(pairs, out / PAIRS)
    write_table(outcomes, out / PLANTED)
    (out / STATS).write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")
