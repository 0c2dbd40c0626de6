"""embed: one model at one image size over every image of a manifest (real images or planted copies)."""
import time
from pathlib import Path

from neardup.cache import vector_cache
from neardup.contract import read_manifest, read_table
from neardup.embed import Embedder
from neardup.embed.models import MODEL_NAMES
from neardup.params import check_choice, load_params
from neardup.runner import parse_args, record_timing, run_stage


def main() -> None:
    args = parse_args(__doc__, ("--model", {}), ("--size", {"help": "input side in px, or auto"}),
                      ("--manifest", {"help": "manifest CSV of the images"}), ("--out", {"help": ".npz file"}),
                      ("--size-from", {"required": False,
                                       "help": "manifest whose image sizes 'auto' fits (default: --manifest)"}))
    params = load_params("embed")
    check_choice(args.model, MODEL_NAMES, "embed.models")
    size = args.size if args.size == "auto" else int(args.size)
    embedder = Embedder(args.model, size=size, weights=params.weights, batch_size=params.batch_size,
                        pooling=params.pooling, manifest=read_manifest(args.size_from or args.manifest))
    cache_dir = load_params("cache").dir
    # vectors by content hash: only new images are embedded, a killed run resumes
    cache = vector_cache(cache_dir, model=args.model, size=embedder.size, pooling=params.pooling,
                         weights=params.weights)
    start = time.perf_counter()
    emb = embedder.embed_manifest(read_table(args.manifest), cache=cache)
    emb.save(args.out)
    record_timing("embed", Path(args.out).stem, images=len(emb.ids), seconds=time.perf_counter() - start,
                  rate=emb.images_per_second)


if __name__ == "__main__":
    run_stage(main)
