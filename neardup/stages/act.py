"""act: lists to act on, from the primary run's groups at its chosen eps.

``reports/keep.csv`` / ``reports/remove.csv`` (one keeper per duplicate group, by
``act.prefer_set``, then the largest image, then the smallest id) and ``reports/folds.csv``
(cross-validation folds stratified by label, every duplicate group inside one fold); and the primary
run's metrics and curves under names that do not depend on the run (``reports/primary/``), so
``dvc metrics diff`` / ``dvc plots diff`` compare experiments on other models or sizes.
"""
import json
import logging
from pathlib import Path

from neardup.act import choose_keepers, fold_balance, leakage_safe_folds, primary_block
from neardup.contract import PRIMARY_METRICS, read_groups, read_manifest, read_table, write_table
from neardup.params import ParamsError, load_params
from neardup.runner import parse_args, run_stage

log = logging.getLogger("neardup.stages.act")


def main() -> None:
    args = parse_args(__doc__, ("--run", {"help": "the primary run"}), ("--manifest", {}),
                      ("--groups", {"help": "groups at the chosen eps"}), ("--metrics", {"help": "the run's metrics"}),
                      ("--plots", {"help": "plots folder (eps/<run>.csv, pr/<run>.csv)"}),
                      ("--primary", {"help": "output folder for the primary run's metrics and curves"}),
                      ("--keep", {}), ("--remove", {}), ("--folds", {}))
    params = load_params("act")
    manifest = read_manifest(Path(args.manifest))
    if params.prefer_set and params.prefer_set not in set(manifest["set"]):
        raise ParamsError(f"act.prefer_set {params.prefer_set!r} is not a set of the dataset: "
                          f"{sorted(set(manifest['set']))}")
    at = read_groups(Path(args.groups))
    keep, remove = choose_keepers(at, manifest, prefer_set=params.prefer_set)
    folds = leakage_safe_folds(manifest, at, n_splits=params.n_splits, seed=params.seed)
    for table, path in ((keep, args.keep), (remove, args.remove), (folds, args.folds)):
        write_table(table, Path(path))
    # the primary run under fixed names: experiments on other models / sizes compare column by column
    primary, plots = Path(args.primary), Path(args.plots)
    primary.mkdir(parents=True, exist_ok=True)
    block = primary_block(args.run, json.loads(Path(args.metrics).read_text()))
    (primary / PRIMARY_METRICS).write_text(json.dumps(block, indent=2, sort_keys=True) + "\n")
    for curve in ("eps", "pr"):
        write_table(read_table(plots / curve / f"{args.run}.csv"), primary / f"{curve}.csv")
    worst = float(fold_balance(folds).abs().max().max()) if len(folds) else 0.0
    log.info("%d groups: keep %d, remove %d; %d folds, largest label-share deviation %.3f",
             at["group"].nunique(), len(keep), len(remove), params.n_splits, worst)


if __name__ == "__main__":
    run_stage(main)
