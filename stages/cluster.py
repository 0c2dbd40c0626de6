"""cluster: scored candidate pairs and DBSCAN groups of one run for every eps of ``cluster.eps``.

CNN runs are scored on whitened features mixed with the perceptual hash ``cluster.hash`` (see
``cluster.whiten`` / ``cluster.hash_weight``); ``--baseline`` runs (the hashes) use their vectors as
they are. Planted copies are clustered alongside, never reported. Images with the same pixels (or
bytes) are duplicates at distance 0 in every run.
"""
import json
from pathlib import Path

import numpy as np

from neardup.cluster import cluster_run
from neardup.cluster.scoring import descriptors
from neardup.contract import (GROUPS, PAIRS, PLANTED, STATS, Embeddings, UserError, content_keys, read_manifest,
                              read_table, write_table)
from neardup.params import ParamsError, load_params
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--manifest", {}), ("--embeddings", {}), ("--plants-embeddings", {}),
                      ("--plants-truth", {}), ("--out", {"help": "output folder"}),
                      ("--hashes", {"required": False, "help": "hash .npz mixed into the CNN vectors"}),
                      ("--plants-hashes", {"required": False}),
                      ("--baseline", {"action": "store_true", "required": False,
                                      "help": "score the vectors as they are (hash baselines)"}))
    params = load_params("cluster")
    emb, plants = Embeddings.load(args.embeddings), Embeddings.load(args.plants_embeddings)
    n = len(emb.ids)
    if not n:  # an empty dataset (read_manifest says so), or no image could be embedded / hashed
        read_manifest(Path(args.manifest))
        why = f" (e.g. {emb.skipped['id'].iloc[0]}: {emb.skipped['reason'].iloc[0]})" if len(emb.skipped) else ""
        raise UserError(f"{args.embeddings} holds no vectors: no image of {args.manifest} could be read{why}")
    vectors = np.vstack([emb.vectors, plants.vectors])
    if not args.baseline:
        hashes = None
        if params.hash_weight:
            if not args.hashes:
                raise ParamsError(f"cluster.hash_weight is {params.hash_weight} but no hash was given: "
                                  f"list cluster.hash in hash.methods, or set cluster.hash_weight: 0")
            hashes = np.vstack([Embeddings.load(args.hashes).rows_for(emb.ids),
                                Embeddings.load(args.plants_hashes).rows_for(plants.ids)])
        vectors = descriptors(vectors, whiten=params.whiten, hashes=hashes, hash_weight=params.hash_weight,
                              fit_rows=n)
    manifest = read_table(Path(args.manifest)).set_index("id").loc[emb.ids]
    stats = {}
    groups, pairs, outcomes = cluster_run(
        vectors[:n], emb.ids, manifest["label_name"].to_numpy(), eps_values=params.eps,
        metric=params.metric, normalize_k=0 if args.baseline else params.normalize_k, candidates=params.candidates,
        search=params.search, nprobe=params.nprobe, block=params.block_size, content=content_keys(manifest),
        plant_vectors=vectors[n:],
        plant_ids=plants.ids, plant_truth=read_table(Path(args.plants_truth)), stats=stats)
    stats.update(eps=list(params.eps), input_size=emb.input_size, n_embedded=n, skipped_ids=sorted(emb.skipped["id"].astype(str)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(groups, out / GROUPS)
    write_table(pairs, out / PAIRS)
    write_table(outcomes, out / PLANTED)
    (out / STATS).write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    run_stage(main)
