"""act: lists to act on, from the primary run's groups at its chosen eps.

``reports/keep.csv`` / ``reports/remove.csv`` (one keeper per duplicate group, by
``act.prefer_set``, then the largest image, then the smallest id) and ``reports/folds.csv``
(cross-validation folds stratified by label, every duplicate group inside one fold).
"""
import logging
from pathlib import Path

from neardup.act import choose_keepers, fold_balance, leakage_safe_folds
from neardup.contract import read_groups, read_table, write_table
from neardup.params import ParamsError, load_params
from neardup.runner import parse_args, run_stage

log = logging.getLogger("stages.act")


def main() -> None:
    args = parse_args(__doc__, ("--manifest", {}), ("--groups", {"help": "groups at the chosen eps"}),
                      ("--keep", {}), ("--remove", {}), ("--folds", {}))
    params = load_params("act")
    manifest = read_table(Path(args.manifest))
    if params.prefer_set and params.prefer_set not in set(manifest["set"]):
        raise ParamsError(f"act.prefer_set {params.prefer_set!r} is not a set of the dataset: "
                          f"{sorted(set(manifest['set']))}")
    at = read_groups(Path(args.groups))
    keep, remove = choose_keepers(at, manifest, prefer_set=params.prefer_set)
    folds = leakage_safe_folds(manifest, at, n_splits=params.n_splits, seed=params.seed)
    for table, path in ((keep, args.keep), (remove, args.remove), (folds, args.folds)):
        write_table(table, Path(path))
    worst = float(fold_balance(folds).abs().max().max()) if len(folds) else 0.0
    log.info("%d groups: keep %d, remove %d; %d folds, largest label-share deviation %.3f",
             at["group"].nunique(), len(keep), len(remove), params.n_splits, worst)


if __name__ == "__main__":
    run_stage(main)
