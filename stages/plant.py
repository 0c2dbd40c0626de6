"""plant: transformed copies of sampled real images, written under the pipeline's own data folder."""
import shutil
from pathlib import Path

from neardup.params import load_params
from neardup.planting import plant_copies
from neardup.tables import read_table
from neardup.runner import parse_args, run_stage
from neardup.sources import write_fetch_result


def main() -> None:
    args = parse_args(__doc__, ("--manifest", {}), ("--out", {}))
    params = load_params("evaluate").plant
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    result = plant_copies(read_table(Path(args.manifest)), out, n=params.n, transforms=params.transforms,
                          seed=params.seed)
    write_fetch_result(result, out)


if __name__ == "__main__":
    run_stage(main)
