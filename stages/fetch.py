"""fetch: build the manifest (and ground truth) of the dataset chosen by ``params.yaml: fetch``."""
import shutil
from pathlib import Path

from neardup.params import load_params
from neardup.runner import parse_args, run_stage
from neardup.fetch import fetch_dataset
from neardup.sources import write_fetch_result


def main() -> None:
    args = parse_args(__doc__, ("--out", {"help": "output directory (manifest, skipped, truth, images)"}))
    params = load_params("fetch")
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    result = fetch_dataset(params, out)
    write_fetch_result(result, out)


if __name__ == "__main__":
    run_stage(main)
