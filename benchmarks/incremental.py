"""Adding images to a large dataset: the vector cache against embedding everything from scratch.

Writes ``--n`` small JPEGs (CIFAR-sized 32x32 by default, so 100,000 embed in minutes on a CPU),
embeds them from scratch with an empty cache (the model and the dHash, as the embed and hash stages
do), then adds ``--add`` new images and runs again with the cache the first run left: only the
new ones should be decoded. Every step is timed in this one run, and the vectors of the old images
are checked to be the same as the first run's. Not a test::

    PYTHONPATH=. .venv/bin/python benchmarks/incremental.py --n 100000 --add 1000
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neardup.embed import Embedder  # noqa: E402
from neardup.hash import hash_manifest  # noqa: E402
from neardup.images import scan_files  # noqa: E402
from neardup.cache import InspectionCache, VectorCache  # noqa: E402


def write_images(folder: Path, first: int, n: int, *, side: int, seed: int = 0) -> list[Path]:
    """``n`` distinct smooth colour JPEGs of ``side x side`` px, numbered from ``first``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + first)
    paths = []
    for k in range(first, first + n):
        coarse = Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8))
        image = np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)
        image += rng.normal(scale=12.0, size=image.shape)
        path = folder / f"{k:07d}.jpg"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def embed(manifest: pd.DataFrame, cache_root: Path, *, model: str, batch_size: int):
    """What the embed stage does for one model: CNN vectors and dHash, both through the cache."""
    start = time.perf_counter()
    embedder = Embedder(model, size="auto", weights="imagenet", batch_size=batch_size, pooling="max",
                        manifest=manifest)
    cache = VectorCache(cache_root, f"{model}_{embedder.size}")
    loaded = time.perf_counter()
    n_todo = int(sum(sha not in cache for sha in manifest["sha256"]))
    emb = embedder.embed_manifest(manifest, cache=cache)
    hashes = hash_manifest(manifest, method="dhash", hash_size=8, cache=VectorCache(cache_root, "dhash"))
    return emb, hashes, n_todo, loaded - start, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="images in the dataset at first")
    parser.add_argument("--add", type=int, default=1_000, help="images added afterwards")
    parser.add_argument("--side", type=int, default=32, help="image side in px (size auto embeds at 3x)")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--scan-only", action="store_true", help="time the fetch scans only (e.g. with --side 600)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "img"
        start = time.perf_counter()
        old = write_images(root, 0, args.n, side=args.side)
        new = write_images(root, args.n, args.add, side=args.side)
        print(f"wrote {args.n:,} + {args.add:,} {args.side}x{args.side} JPEGs in {time.perf_counter() - start:.0f} s",
              flush=True)
        rows = []

        start = time.perf_counter()
        before = scan_files(old, root=root, set_name="train", cache=InspectionCache(Path(tmp) / "cache")).manifest
        rows.append((f"scan {args.n:,} files (sha256 + full decode)", 0, time.perf_counter() - start))
        if args.scan_only:
            start = time.perf_counter()
            scan_files(old + new, root=root, set_name="train")
            rows.append((f"scan {args.n + args.add:,} files without the cache", 0, time.perf_counter() - start))
            start = time.perf_counter()
            scan_files(old + new, root=root, set_name="train", cache=InspectionCache(Path(tmp) / "cache"))
            rows.append((f"scan {args.n + args.add:,} files with the cache (decode the new only)", 0,
                         time.perf_counter() - start))
            print(f"\n{args.side}x{args.side} JPEGs\n\n| step | seconds |\n|---|---|")
            for what, _, secs in rows:
                print(f"| {what} | {secs:.1f} |")
            return
        emb, hashes, n_todo, setup, seconds = embed(before, Path(tmp) / "cache", model=args.model,
                                                    batch_size=args.batch_size)
        rows.append((f"from scratch: embed + hash {args.n:,} (model load {setup:.0f} s)", n_todo, seconds))
        print(f"from scratch: {seconds:.0f} s ({len(emb.ids) / seconds:.0f} images/s)", flush=True)

        start = time.perf_counter()
        after = scan_files(old + new, root=root, set_name="train", cache=InspectionCache(Path(tmp) / "cache")).manifest
        rows.append((f"scan {args.n + args.add:,} files (sha256; only the new decoded)", 0,
                     time.perf_counter() - start))
        grown, grown_hashes, n_todo, setup, seconds = embed(after, Path(tmp) / "cache", model=args.model,
                                                            batch_size=args.batch_size)
        rows.append((f"add {args.add:,}: model + cache load {setup:.0f} s, then embed + hash", n_todo, seconds))

        same = np.array_equal(grown.vectors[:len(emb.ids)], emb.vectors) and np.array_equal(
            grown_hashes.vectors[:len(hashes.ids)], hashes.vectors)
        print(f"\n{args.model}, size auto ({grown.input_size} px), {args.side}x{args.side} JPEGs\n")
        print("| step | images embedded | seconds |\n|---|---|---|")
        for what, count, secs in rows:
            print(f"| {what} | {count:,} | {secs:.1f} |")
        full = rows[1][2] * (args.n + args.add) / args.n
        print(f"\nadding {args.add:,} to {args.n:,}: {seconds:.0f} s against about {full:.0f} s to embed all "
              f"{args.n + args.add:,} from scratch ({full / seconds:.0f}x faster; the from-scratch figure is the "
              f"measured {args.n:,} scaled by {(args.n + args.add) / args.n:.2f})")
        print(f"old images' vectors and hashes identical to the first run: {same}; "
              f"hashes cached: {len(VectorCache(Path(tmp) / 'cache', 'dhash')):,}")


if __name__ == "__main__":
    main()
