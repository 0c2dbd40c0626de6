"""cluster: scored candidate pairs and DBSCAN groups of one run for every eps of ``cluster.eps``.

CNN runs are scored on whitened features mixed with the perceptual hash ``cluster.hash`` (see
``cluster.whiten`` / ``cluster.hash_weight``); ``--baseline`` runs (the hashes) use their vectors as
they are. Planted copies are clustered alongside, never reported. Images with the same pixels (or
bytes) are duplicates at distance 0 in every run.
"""
from pathlib import Path

from neardup.cluster.run import cluster_embeddings, write_cluster_outputs
from neardup.contract import Embeddings, read_manifest, read_table
from neardup.params import load_params
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--manifest", {}), ("--embeddings", {}), ("--plants-embeddings", {}),
                      ("--plants-truth", {}), ("--out", {"help": "output folder"}),
                      ("--plants-manifest", {"required": False, "help": "the copies' manifest (verification)"}),
                      ("--hashes", {"required": False, "help": "hash .npz mixed into the CNN vectors"}),
                      ("--plants-hashes", {"required": False}),
                      ("--baseline", {"action": "store_true", "required": False,
                                      "help": "score the vectors as they are (hash baselines)"}))
    params, cache_dir, engine = load_params("cluster"), load_params("cache").dir, load_params("engine")
    manifest = read_manifest(Path(args.manifest))  # an empty dataset: one clear line
    load = Embeddings.load
    groups, pairs, outcomes, stats = cluster_embeddings(
        load(args.embeddings), load(args.plants_embeddings), manifest, read_table(Path(args.plants_truth)),
        params=params, baseline=args.baseline, hashes=load(args.hashes) if args.hashes else None,
        plant_hashes=load(args.plants_hashes) if args.plants_hashes else None, source=args.embeddings,
        plant_manifest=read_table(Path(args.plants_manifest)) if args.plants_manifest else None, cache_dir=cache_dir,
        engine=engine)
    write_cluster_outputs(Path(args.out), groups, pairs, outcomes, stats)


if __name__ == "__main__":
    run_stage(main)
