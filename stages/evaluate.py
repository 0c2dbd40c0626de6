"""evaluate: precision / recall / F1 over the eps sweep for every model and size; the chosen eps."""
from pathlib import Path

from neardup.params import load_params
from neardup.report import evaluate_all, write_metrics
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--dataset", {}), ("--clusters", {}), ("--embeddings", {}), ("--metrics", {}),
                      ("--plots", {}))
    embed, cluster, evaluate = load_params("embed"), load_params("cluster"), load_params("evaluate")
    metrics, sweeps = evaluate_all(Path(args.dataset), Path(args.clusters), Path(args.embeddings),
                                   models=embed.models, sizes=embed.sizes, eps_values=cluster.eps,
                                   min_precision=evaluate.min_precision, fallback_eps=evaluate.fallback_eps)
    write_metrics(metrics, sweeps, metrics_path=Path(args.metrics), plots_dir=Path(args.plots))


if __name__ == "__main__":
    run_stage(main)
