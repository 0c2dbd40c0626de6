"""fetch: build the manifest (and ground truth) of the dataset chosen by ``params.yaml: fetch``."""
import shutil
from pathlib import Path

from neardup.cache import InspectionCache
from neardup.contract import write_fetch_result
from neardup.fetch import EmptyDatasetError, fetch_dataset
from neardup.fetch.guard import guard_input
from neardup.params import load_params
from neardup.runner import parse_args, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--out", {"help": "output directory (manifest, skipped, truth, images)"}))
    params = load_params("fetch")
    # the entries of fetch.input DVC would hang or abort on go to .dvcignore (the fetch_input stage did
    # it already under `dvc repro`; again here for a direct run)
    guard_input(params.input)
    # the content cache also remembers what each file held, so a re-scan of a grown dataset decodes
    # only the new files (results never depend on it, so it is no DVC dependency)
    cache_dir = load_params("cache").dir
    cache = InspectionCache(Path(cache_dir)) if cache_dir else None
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    try:
        result = fetch_dataset(params, out, cache=cache, engine=load_params("engine"))
    except EmptyDatasetError as exc:
        write_fetch_result(exc.result, out)  # skipped.csv says why each entry was left out
        raise
    write_fetch_result(result, out)


if __name__ == "__main__":
    run_stage(main)
