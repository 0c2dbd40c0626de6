"""render: a figure per duplicate group at the chosen eps, and the label-conflict table."""
import json
from pathlib import Path

from neardup.params import load_params
from neardup.render import render_all
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--dataset", {}), ("--clusters", {}), ("--metrics", {}), ("--out", {}))
    embed, render = load_params("embed"), load_params("render")
    metrics = json.loads(Path(args.metrics).read_text())
    render_all(Path(args.dataset), Path(args.clusters), metrics, Path(args.out), models=embed.models,
               sizes=embed.sizes, max_groups=render.max_groups, thumb_size=render.thumb_size)


if __name__ == "__main__":
    run_stage(main)
