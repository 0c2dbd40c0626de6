"""cluster: candidate pairs and DBSCAN groups for every eps of ``params.yaml: cluster.eps``.

CNN runs are scored on whitened features mixed with the perceptual hash stored beside them (see
``cluster.whiten`` / ``cluster.hash_weight``); ``--baseline`` runs (the hash baselines) use their
vectors as they are. Planted copies are clustered alongside, never reported.
"""
import json
from pathlib import Path

import numpy as np

from neardup.clustering import cluster_run
from neardup.embedding import Embeddings
from neardup.params import ParamsError, load_params
from neardup.runner import parse_args, run_stage
from neardup.scoring import descriptors
from neardup.tables import read_table


def main() -> None:
    args = parse_args(__doc__, ("--manifest", {}), ("--embeddings", {}), ("--plants-truth", {}),
                      ("--plants-embeddings", {}), ("--out", {"help": "output folder"}),
                      ("--baseline", {"action": "store_true", "required": False,
                                      "help": "score the vectors as they are"}))
    params = load_params("cluster")
    emb, plants = Embeddings.load(args.embeddings), Embeddings.load(args.plants_embeddings)
    n = len(emb.ids)
    if args.baseline:
        vectors, options = np.vstack([emb.vectors, plants.vectors]), {}
    else:
        if params.hash_weight and not emb.hashes.shape[1]:
            raise ParamsError(f"cluster.hash_weight is {params.hash_weight} but {args.embeddings} holds no hash: "
                              f"set embed.hash (e.g. dhash) or cluster.hash_weight: 0")
        vectors = descriptors(np.vstack([emb.vectors, plants.vectors]), whiten=params.whiten,
                              hashes=np.vstack([emb.hashes, plants.hashes]), hash_weight=params.hash_weight,
                              fit_rows=n)
        options = {"normalize_k": params.normalize_k, "mutual_k": params.mutual_k, "search": params.search,
                   "nprobe": params.nprobe}
    manifest = read_table(Path(args.manifest)).set_index("id")
    stats = {}
    groups, pairs, outcomes = cluster_run(
        vectors[:n], emb.ids, manifest.loc[emb.ids, "label_name"].to_numpy(), eps_values=params.eps,
        metric=params.metric, min_samples=params.min_samples, plant_vectors=vectors[n:],
        plant_ids=plants.ids, plant_truth=read_table(Path(args.plants_truth)), block=params.block_size,
        stats=stats, **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    groups.to_csv(out / "groups.csv", index=False)
    pairs.to_csv(out / "pairs.csv", index=False)
    outcomes.to_csv(out / "planted.csv", index=False)
    (out / "search.json").write_text(json.dumps(stats, indent=1) + "\n")


if __name__ == "__main__":
    run_stage(main)
