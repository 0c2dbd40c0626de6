"""evaluate: precision / recall / F1 / AP over the eps sweep per run, planted recall, reviewed precision."""
from pathlib import Path

from neardup.params import load_params
from neardup.report import evaluate_all, write_outputs
from neardup.tables import run_keys
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--dataset", {}), ("--plants", {}), ("--embeddings", {}), ("--clusters", {}),
                      ("--reviews", {}), ("--metrics", {}), ("--plots", {}), ("--queue", {}))
    embed, hashes = load_params("embed"), load_params("hash")
    cluster, evaluate = load_params("cluster"), load_params("evaluate")
    metrics, sweeps, queue, reasons = evaluate_all(
        Path(args.dataset), Path(args.plants), Path(args.embeddings), Path(args.clusters), Path(args.reviews),
        runs=run_keys(embed.models, embed.sizes, hashes.methods), eps_values=cluster.eps,
        min_precision=evaluate.min_precision, max_unrelated=evaluate.max_unrelated,
        fallback_eps=evaluate.fallback_eps)
    write_outputs(metrics, sweeps, queue, reasons, metrics_path=Path(args.metrics), plots_dir=Path(args.plots),
                  queue_path=Path(args.queue))


if __name__ == "__main__":
    run_stage(main)
