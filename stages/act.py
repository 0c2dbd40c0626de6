"""act: lists to act on, from one run's groups at its chosen eps.

``reports/keep.csv`` / ``reports/remove.csv`` (one keeper per duplicate group, by
``act.prefer_set``, then the largest image, then the smallest id) and ``reports/folds.csv``
(cross-validation folds stratified by label, every duplicate group inside one fold).
"""
import json
import logging
from pathlib import Path

import numpy as np

from neardup.leakage import choose_keepers, fold_balance, leakage_safe_folds
from neardup.params import ParamsError, load_params
from neardup.runner import parse_args, run_stage
from neardup.tables import read_groups, read_table, run_keys

log = logging.getLogger("stages.act")


def main() -> None:
    args = parse_args(__doc__, ("--dataset", {}), ("--clusters", {}), ("--metrics", {}), ("--keep", {}),
                      ("--remove", {}), ("--folds", {}))
    params, embed = load_params("act"), load_params("embed")
    run = params.run or run_keys(embed.models, embed.sizes)[0]
    metrics = json.loads(Path(args.metrics).read_text())
    if run not in metrics:
        raise ParamsError(f"act.run {run!r} is not a run of this sweep; runs: {sorted(set(metrics) - {'dataset'})}")
    manifest = read_table(Path(args.dataset) / "manifest.csv")
    if params.prefer_set and params.prefer_set not in set(manifest["set"]):
        raise ParamsError(f"act.prefer_set {params.prefer_set!r} is not a set of the dataset: "
                          f"{sorted(set(manifest['set']))}")
    eps = float(metrics[run]["eps"])
    groups = read_groups(Path(args.clusters) / run / "groups.csv")
    at = groups[np.isclose(groups["eps"], eps)]
    keep, remove = choose_keepers(at, manifest, prefer_set=params.prefer_set)
    folds = leakage_safe_folds(manifest, at, n_splits=params.n_splits, seed=params.seed)
    for table, path in ((keep, args.keep), (remove, args.remove), (folds, args.folds)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
    worst = float(fold_balance(folds).abs().max().max()) if len(folds) else 0.0
    log.info("%s at eps %g: %d groups, keep %d, remove %d; %d folds, largest label-share deviation %.3f",
             run, eps, at["group"].nunique(), len(keep), len(remove), params.n_splits, worst)


if __name__ == "__main__":
    run_stage(main)
