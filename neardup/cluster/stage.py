"""The cluster stage: scored candidate pairs and DBSCAN groups of one variant for every eps of
``cluster.eps`` (:func:`run`): descriptors from the vectors (whitening and the hash mix for CNN
variants), the pair graph and DBSCAN over the sweep, and the variant's files (:mod:`neardup.contract`).

CNN variants are scored on whitened features mixed with the perceptual hash ``cluster.hash`` (see
``cluster.whiten`` / ``cluster.hash_weight``); baselines (the hashes) use their vectors as they are.
Planted copies are clustered alongside, never reported. Images with the same pixels (or bytes) are
duplicates at distance 0 in every variant."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from neardup.cluster import cluster_vectors
from neardup.cluster.scoring import descriptors
from neardup.contract import (GROUPS, PAIRS, PLANTED, STATS, Embeddings, UserError, content_keys, read_manifest,
                              read_table, write_table)
from neardup.layout import Layout
from neardup.params import ClusterParams, ParamsError, params_from_dict
from neardup.search.tasks import search_executor


def run(params: dict, layout: Layout, *, variant: str, baseline: bool = False) -> None:
    """Cluster one variant into ``layout.clusters(variant)``: a CNN variant's embeddings (mixed with
    ``cluster.hash``'s hashes when ``cluster.hash_weight`` > 0, verified against the images), or
    (``baseline``) the hash ``variant``'s vectors as they are. Reads ``cluster``, ``cache``, ``engine``."""
    cluster, engine = params_from_dict(params, "cluster"), params_from_dict(params, "engine")
    manifest = read_manifest(layout.manifest())  # an empty dataset: one clear line
    vectors = layout.hashes if baseline else layout.embeddings
    source = vectors(variant)
    hashes = plant_hashes = plant_manifest = None
    if not baseline:
        plant_manifest = read_table(layout.manifest(plants=True))
        if cluster.hash_weight:
            hashes = Embeddings.load(layout.hashes(cluster.hash))
            plant_hashes = Embeddings.load(layout.hashes(cluster.hash, plants=True))
    groups, pairs, outcomes, stats = cluster_embeddings(
        Embeddings.load(source), Embeddings.load(vectors(variant, plants=True)), manifest,
        read_table(layout.plants_truth), params=cluster, baseline=baseline, hashes=hashes, plant_hashes=plant_hashes,
        source=str(source), plant_manifest=plant_manifest, cache_dir=params_from_dict(params, "cache").dir,
        engine=engine)
    write_cluster_outputs(layout.clusters(variant), groups, pairs, outcomes, stats)


def cluster_embeddings(emb: Embeddings, plants: Embeddings, manifest: pd.DataFrame, plant_truth: pd.DataFrame, *,
                       params: ClusterParams, baseline: bool, hashes: Embeddings | None = None,
                       plant_hashes: Embeddings | None = None, source: str = "the embeddings",
                       plant_manifest: pd.DataFrame | None = None, cache_dir: str = "", engine=None):
    """Cluster one variant's real images (with its planted copies alongside).

    Parameters
    ----------
    emb, plants : Embeddings
        The variant's vectors of the real images and of the planted copies.
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
        the largest eps is verified geometrically, copies included (CNN variants only).
    cache_dir : str
        ``cache.dir``: keypoints are kept there by image content ('' = no cache).
    engine : EngineParams, optional
        Where the pair search runs (:func:`neardup.search.tasks.search_executor`); default here.

    Returns
    -------
    groups, pairs, outcomes : DataFrames of :func:`neardup.cluster.cluster_vectors`
    stats : dict, the variant's ``stats.json``
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
    with search_executor(engine, cache_dir) as executor:
        groups, pairs, outcomes = cluster_vectors(
            vectors[:n], emb.ids, rows["label_name"].to_numpy(), eps_values=params.eps, metric=params.metric,
            normalize_k=0 if baseline else params.normalize_k, candidates=params.candidates, search=params.search,
            nprobe=params.nprobe, block=params.block_size, content=content_keys(rows), plant_vectors=vectors[n:],
            plant_ids=plants.ids, plant_truth=plant_truth, stats=stats, verify=verify, executor=executor)
    stats.update(eps=list(params.eps), input_size=emb.input_size, n_embedded=n,
                 skipped_ids=sorted(emb.skipped["id"].astype(str)))
    return groups, pairs, outcomes, stats


def write_cluster_outputs(out: Path, groups: pd.DataFrame, pairs: pd.DataFrame, outcomes: pd.DataFrame,
                          stats: dict) -> None:
    """A variant's cluster folder: ``groups.csv``, ``pairs.csv``, ``planted.csv`` and ``stats.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(groups, out / GROUPS)
    write_table(pairs, out / PAIRS)
    write_table(outcomes, out / PLANTED)
    (out / STATS).write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")
