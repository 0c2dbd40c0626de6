"""render: group figures, label conflicts, pair figures for the review queue, the quality report and the
self-contained HTML report."""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from neardup.html_report import write_html_report
from neardup.params import load_params
from neardup.quality import write_quality_report
from neardup.render import render_all
from neardup.tables import read_groups, read_queue, read_table, run_keys
from neardup.review import draw_pair_figures
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--dataset", {}), ("--clusters", {}), ("--metrics", {}), ("--plots", {}),
                      ("--queue", {}), ("--out", {}), ("--review-figures", {}), ("--quality", {}),
                      ("--html", {}))
    embed, hashes, render = load_params("embed"), load_params("hash"), load_params("render")
    runs = run_keys(embed.models, embed.sizes, hashes.methods)
    metrics = json.loads(Path(args.metrics).read_text())
    dataset = Path(args.dataset)
    manifest = read_table(dataset / "manifest.csv")
    groups = {}  # each run's groups at its chosen eps, read once for the figures and the HTML report
    for run in runs:
        table = read_groups(Path(args.clusters) / run / "groups.csv")
        groups[run] = table[np.isclose(table["eps"], float(metrics[run]["eps"]))].assign(
            distance=lambda t: pd.to_numeric(t["distance"], errors="coerce"))
    render_all(groups, manifest, metrics, Path(args.out), runs=runs, max_groups=render.max_groups,
               thumb_size=render.thumb_size)
    queue = read_queue(args.queue)
    Path(args.review_figures).mkdir(parents=True, exist_ok=True)  # an output even when nothing is proposed
    draw_pair_figures(queue, manifest, Path(args.review_figures), max_figures=render.max_pair_figures)
    figure = Path(args.out) / "precision_recall.png"
    write_quality_report(metrics, Path(args.plots), Path(args.quality), runs=runs, figure=figure)
    overlap = {run: pd.DataFrame(metrics[run].get("overlap", {})).T for run in runs}
    write_html_report(Path(args.html), metrics=metrics, runs=runs, groups=groups,
                      manifest=manifest, overlap=overlap,
                      figures={"Precision-recall over the eps sweep": figure}, thumb_size=render.thumb_size,
                      max_groups=render.max_groups)


if __name__ == "__main__":
    run_stage(main)
