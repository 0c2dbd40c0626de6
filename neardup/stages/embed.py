"""embed: one model at one image size over every image of a manifest (real images or planted copies)."""
import time
from pathlib import Path

from neardup.contract import read_manifest, read_table
from neardup.embed.run import embed_images
from neardup.params import load_params
from neardup.runner import parse_args, record_timing, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--model", {}), ("--size", {"help": "input side in px, or auto"}),
                      ("--manifest", {"help": "manifest CSV of the images"}), ("--out", {"help": ".npz file"}),
                      ("--size-from", {"required": False,
                                       "help": "manifest whose image sizes 'auto' fits (default: --manifest)"}))
    # bad params first, before any file
    params, cache_dir, engine = load_params("embed"), load_params("cache").dir, load_params("engine")
    size = args.size if args.size == "auto" else int(args.size)
    manifest = read_table(args.manifest)
    start = time.perf_counter()
    emb = embed_images(args.model, size, manifest, params=params, cache_dir=cache_dir, engine=engine,
                       size_from=read_manifest(args.size_from) if args.size_from else read_manifest(args.manifest))
    emb.save(args.out)
    record_timing("embed", Path(args.out).stem, images=len(emb.ids), seconds=time.perf_counter() - start,
                  rate=emb.images_per_second, runtime=emb.runtime)


if __name__ == "__main__":
    run_stage(main)
