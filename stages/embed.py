"""embed: one model (or perceptual hash) at one image size over every image of one or more manifests."""
import argparse
from pathlib import Path

from neardup.hashing import hash_manifest, is_hash_method
from neardup.params import load_params
from neardup.tables import read_table
from neardup.runner import run_stage
from neardup.vector_cache import CACHE_VERSION, VectorCache, descriptor_key


def _cache(root: str, **settings) -> VectorCache | None:
    """The vector cache for these settings under ``root`` (``embed.cache``; empty: no cache)."""
    if not root:
        return None
    settings["version"] = CACHE_VERSION
    return VectorCache(Path(root), descriptor_key(**settings), settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a model name, or a hash method of hash.methods")
    parser.add_argument("--size", help="input size or 'auto' (models only)")
    parser.add_argument("--size-from", help="manifest whose image sizes 'auto' fits (default: the first --manifest)")
    parser.add_argument("--manifest", action="append", required=True, help="manifest CSV (repeatable)")
    parser.add_argument("--out", action="append", required=True, help=".npz per --manifest, in order")
    args = parser.parse_args()
    if len(args.manifest) != len(args.out):
        parser.error("give one --out per --manifest")
    params = load_params("embed")
    if is_hash_method(args.model):
        hash_size = load_params("hash").hash_size
        cache = _cache(params.cache, hash=args.model, hash_size=hash_size)
        for manifest, out in zip(args.manifest, args.out):
            hash_manifest(read_table(manifest), method=args.model, hash_size=hash_size, cache=cache).save(out)
        return
    from neardup.embedding import Embedder

    if args.size is None:
        parser.error("--size is required for models")
    size = args.size if args.size == "auto" else int(args.size)
    embedder = Embedder(args.model, size=size, weights=params.weights, batch_size=params.batch_size,
                        pooling=params.pooling, grayscale=params.grayscale,
                        manifest=read_table(args.size_from or args.manifest[0]))
    # vectors by content hash: only new images are embedded (or hashed), killed runs resume
    cache = _cache(params.cache, model=args.model, size=embedder.size, pooling=params.pooling,
                   grayscale=params.grayscale, weights=params.weights)
    hash_cache = _cache(params.cache, hash=params.hash, hash_size=8) if params.hash else None
    for manifest_path, out in zip(args.manifest, args.out):
        manifest = read_table(manifest_path)
        emb = embedder.embed_manifest(manifest, cache=cache)
        if params.hash:
            hashed = hash_manifest(manifest, method=params.hash, cache=hash_cache)
            emb.hashes = hashed.rows_for(emb.ids)
        emb.save(out)


if __name__ == "__main__":
    run_stage(main)
