"""plant: transformed copies of sampled real images, written under the pipeline's own data folder."""
import shutil
from pathlib import Path

from neardup.contract import read_manifest, write_fetch_result
from neardup.params import check_choice, load_params
from neardup.plant import plant_copies
from neardup.runner import parse_args, run_stage
from neardup.transforms import TRANSFORMS


def main() -> None:
    args = parse_args(__doc__, ("--manifest", {}), ("--out", {}))
    params = load_params("plant")
    for name in params.transforms:
        check_choice(name, TRANSFORMS, "plant.transforms")
    manifest = read_manifest(Path(args.manifest))
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    result = plant_copies(manifest, out, n=params.n, transforms=params.transforms, seed=params.seed)
    write_fetch_result(result, out)


if __name__ == "__main__":
    run_stage(main)
