"""render: group figures, label conflicts, pair figures for the review queue, and the quality report."""
import json
from pathlib import Path

from neardup.params import load_params
from neardup.quality import write_quality_report
from neardup.render import render_all
from neardup.tables import read_queue, read_table, run_keys
from neardup.review import draw_pair_figures
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--dataset", {}), ("--clusters", {}), ("--metrics", {}), ("--plots", {}),
                      ("--queue", {}), ("--out", {}), ("--review-figures", {}), ("--quality", {}))
    embed, hashes, render = load_params("embed"), load_params("hash"), load_params("render")
    runs = run_keys(embed.models, embed.sizes, hashes.methods)
    metrics = json.loads(Path(args.metrics).read_text())
    dataset = Path(args.dataset)
    render_all(dataset, Path(args.clusters), metrics, Path(args.out), runs=runs, max_groups=render.max_groups,
               thumb_size=render.thumb_size)
    queue = read_queue(args.queue)
    Path(args.review_figures).mkdir(parents=True, exist_ok=True)  # an output even when nothing is proposed
    draw_pair_figures(queue, read_table(dataset / "manifest.csv"), Path(args.review_figures),
                      max_figures=render.max_pair_figures)
    write_quality_report(metrics, Path(args.plots), Path(args.quality), runs=runs,
                         figure=Path(args.out) / "precision_recall.png")


if __name__ == "__main__":
    run_stage(main)
