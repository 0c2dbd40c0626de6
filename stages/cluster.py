"""cluster: DBSCAN groups for every eps of ``params.yaml: cluster.eps``; planted copies clustered alongside."""
from pathlib import Path

from neardup.clustering import cluster_run
from neardup.embedding import Embeddings
from neardup.params import load_params
from neardup.tables import read_table
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--manifest", {}), ("--embeddings", {}), ("--plants-truth", {}),
                      ("--plants-embeddings", {}), ("--out", {"help": "output folder"}))
    params = load_params("cluster")
    emb, plants = Embeddings.load(args.embeddings), Embeddings.load(args.plants_embeddings)
    manifest = read_table(Path(args.manifest)).set_index("id")
    groups, pairs, outcomes = cluster_run(
        emb.vectors, emb.ids, manifest.loc[emb.ids, "label_name"].to_numpy(), eps_values=params.eps,
        metric=params.metric, min_samples=params.min_samples, plant_vectors=plants.vectors,
        plant_ids=plants.ids, plant_truth=read_table(Path(args.plants_truth)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    groups.to_csv(out / "groups.csv", index=False)
    pairs.to_csv(out / "pairs.csv", index=False)
    outcomes.to_csv(out / "planted.csv", index=False)


if __name__ == "__main__":
    run_stage(main)
