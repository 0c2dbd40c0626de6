"""render: group figures, label conflicts, review figures of the primary run, the quality report and the
self-contained HTML report (with the review view of the primary run's pairs), from every run's evaluation."""
import json
from pathlib import Path

import pandas as pd

from neardup.contract import GROUPS, QUEUE, REASON, read_groups, read_manifest, read_queue, run_keys
from neardup.params import load_params
from neardup.render import render_all
from neardup.render.html import write_html_report
from neardup.render.pairs import draw_pair_figures
from neardup.render.quality import write_quality_report
from neardup.runner import parse_args, run_stage
from neardup.verify import pair_matches


def main() -> None:
    args = parse_args(__doc__, ("--manifest", {}), ("--metrics", {"help": "folder of <run>.json"}),
                      ("--plots", {}), ("--evaluation", {"help": "folder of <run>/ evaluations"}),
                      ("--out", {}), ("--review-figures", {}), ("--quality", {}), ("--html", {}))
    embed, hashes, render = load_params("embed"), load_params("hash"), load_params("render")
    verify, cache_dir = load_params("cluster").verify, load_params("cache").dir
    runs = run_keys(embed.models, embed.sizes, hashes.methods)  # the sweep; the first is the primary run
    manifest = read_manifest(Path(args.manifest))
    evaluation = Path(args.evaluation)
    per_run = {run: json.loads((Path(args.metrics) / f"{run}.json").read_text()) for run in runs}
    metrics = {"dataset": per_run[runs[0]]["dataset"], **per_run}
    reasons = {run: (evaluation / run / REASON).read_text().strip() for run in runs}
    groups = {run: read_groups(evaluation / run / GROUPS) for run in runs}  # at each run's chosen eps
    render_all(groups, manifest, metrics, Path(args.out), runs=runs, max_groups=render.max_groups,
               thumb_size=render.thumb_size)
    Path(args.review_figures).mkdir(parents=True, exist_ok=True)  # an output even when nothing is proposed
    queue = read_queue(evaluation / runs[0] / QUEUE)
    # the primary run is a CNN run (the first model): its verified pairs show the agreeing keypoints
    matches = (pair_matches(list(zip(queue["a"].astype(str), queue["b"].astype(str))), manifest, verify,
                            cache_dir=cache_dir) if verify.enabled else {})
    draw_pair_figures(queue, manifest, Path(args.review_figures), max_figures=render.max_pair_figures, matches=matches)
    figure = Path(args.out) / "precision_recall.png"
    write_quality_report(metrics, reasons, Path(args.plots), Path(args.quality), runs=runs, figure=figure)
    overlap = {run: pd.DataFrame(per_run[run].get("overlap", {})).T for run in runs}
    write_html_report(Path(args.html), metrics=metrics, runs=runs, groups=groups, manifest=manifest,
                      overlap=overlap, figures={"Precision-recall over the eps sweep": figure},
                      thumb_size=render.thumb_size, max_groups=render.max_groups, reasons=reasons,
                      review_queue=queue, max_review_pairs=render.max_pair_figures, matches=matches)


if __name__ == "__main__":
    run_stage(main)
