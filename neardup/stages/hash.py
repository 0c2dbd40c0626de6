"""hash: one perceptual hash over every image of one or more manifests (as +-1 vectors)."""
import argparse
import time
from pathlib import Path

from neardup.contract import read_table
from neardup.hash import hash_images
from neardup.params import load_params
from neardup.runner import record_timing, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", required=True, help="a hash of hash.methods")
    parser.add_argument("--manifest", action="append", required=True, help="manifest CSV (repeatable)")
    parser.add_argument("--out", action="append", required=True, help=".npz per --manifest, in order")
    args = parser.parse_args()
    if len(args.manifest) != len(args.out):
        parser.error("give one --out per --manifest")
    params = load_params("hash")
    cache_dir, engine = load_params("cache").dir, load_params("engine")
    for manifest, out in zip(args.manifest, args.out):
        start = time.perf_counter()
        hashed = hash_images(args.method, read_table(manifest), hash_size=params.size, cache_dir=cache_dir,
                             engine=engine)
        hashed.save(out)
        record_timing("hash", Path(out).stem, images=len(hashed.ids), seconds=time.perf_counter() - start,
                      rate=hashed.images_per_second)


if __name__ == "__main__":
    run_stage(main)
