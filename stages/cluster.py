"""cluster: DBSCAN groups for every eps of ``params.yaml: cluster.eps``."""
from pathlib import Path

import pandas as pd

from neardup.clustering import cluster_sweep
from neardup.embedding import Embeddings
from neardup.params import load_params
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--manifest", {}), ("--embeddings", {}), ("--out", {}))
    params = load_params("cluster")
    emb = Embeddings.load(args.embeddings)
    manifest = pd.read_csv(args.manifest, dtype=str, keep_default_na=False).set_index("id")
    labels = manifest.loc[emb.ids, "label_name"].to_numpy()
    groups = cluster_sweep(emb.vectors, emb.ids, labels, eps_values=params.eps, metric=params.metric,
                           min_samples=params.min_samples)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    groups.to_csv(args.out, index=False)


if __name__ == "__main__":
    run_stage(main)
