"""evaluate: one run's precision / recall / F1 / AP over the eps sweep, planted recall, reviewed precision,
the chosen eps, and the review queue at it."""
from pathlib import Path

from neardup.evaluate import evaluate_run, write_run
from neardup.params import load_params
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--run", {}), ("--dataset", {}), ("--plants-truth", {}), ("--clusters", {}),
                      ("--reviews", {}), ("--metrics", {}), ("--plots", {}), ("--out", {}))
    metrics, sweep, at, queue, reason = evaluate_run(
        args.run, dataset=Path(args.dataset), plants_truth=Path(args.plants_truth), clusters=Path(args.clusters),
        reviews_path=Path(args.reviews), params=load_params("evaluate"))
    write_run(args.run, metrics=metrics, sweep=sweep, at=at, queue=queue, reason=reason,
              metrics_path=Path(args.metrics), plots_dir=Path(args.plots), out_dir=Path(args.out))


if __name__ == "__main__":
    run_stage(main)
