"""Geometric verification of candidate pairs: how far it separates copies from look-alikes, and how
verified pairs should move, measured on the pairs the default scoring proposes (docs/quality.md).

For a folder with known duplicates (and/or planted copies), the default configuration (Lite0@auto,
max pooling, whitening, dHash mix, neighbourhood normalisation) proposes the candidate pairs: each
image's 10 nearest and every pair within ``--radius``. Every pair within the radius is verified
(:mod:`neardup.verify`), and the table gives AP, best pair F1, R@P0.9, recall per planted transform
at the best-F1 threshold and the different-original pairs proposed there, with the plain distance
and with the distance adjusted by the verification, plus the cost per image and per pair::

    .venv/bin/python benchmarks/verify_pairs.py --images ../shared/data/wallpapers \\
        --truth ../shared/data/wallpapers/truth_pairs.csv --plant 35
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_duplicates import curve, embed_cached, read_truth, with_plants  # noqa: E402

from neardup.cluster import cluster_run  # noqa: E402
from neardup.cluster.scoring import descriptors  # noqa: E402
from neardup.fetch.folder import scan_folder  # noqa: E402
from neardup.transforms import EASY_TRANSFORMS, HARD_TRANSFORMS  # noqa: E402
from neardup.verify import CONTRAST, extract, match  # noqa: E402


def adjusted(distance: np.ndarray, inliers: np.ndarray, usable: np.ndarray, *, min_inliers: int,
             factor: float, penalty: float) -> np.ndarray:
    """Verified pairs (``inliers >= min_inliers``) move to ``factor * distance``; pairs of two usable
    images with fewer than 4 inliers move ``penalty`` away; the rest keep their distance."""
    out = distance.astype(float).copy()
    out[inliers >= min_inliers] *= factor
    out[usable & (inliers < 4)] += penalty
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--plant", type=int, default=0)
    parser.add_argument("--radius", type=float, default=0.8)
    parser.add_argument("--min-inliers", type=int, default=12)
    parser.add_argument("--factor", type=float, default=0.5, help="verified pairs: distance times this")
    parser.add_argument("--penalty", type=float, default=0.3, help="unverified pairs: distance plus this")
    parser.add_argument("--contrast", type=float, default=CONTRAST, help="SIFT contrastThreshold")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/neardup-bench-cache"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    manifest = scan_folder(args.images).manifest
    true, links = read_truth(args.truth) if args.truth else (set(), [])
    kinds = {}
    cache = args.cache / args.images.resolve().as_posix().strip("/").replace("/", "_")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.plant:
            manifest, planted_true, kinds = with_plants(manifest, links, Path(tmp) / "plants", n=args.plant,
                                                        transforms=EASY_TRANSFORMS + HARD_TRANSFORMS, seed=0)
            true |= planted_true
            cache = cache / f"verify_plants_{args.plant}"
            cache.mkdir(exist_ok=True)
        true = {p for p in true if set(p) <= set(manifest["id"])}
        emb, _ = embed_cached(manifest, cache, "efficientnet-lite0", "auto", "max")
        hashes, _ = embed_cached(manifest, cache, "dhash", 0, "")
        vectors = descriptors(emb.vectors, whiten=1.0, hashes=hashes.rows_for(emb.ids), hash_weight=0.2)
        _, pairs, _ = cluster_run(vectors, emb.ids, [""] * len(emb.ids), eps_values=[args.radius], metric="cosine",
                                  normalize_k=10, candidates=10, search="exact", nprobe=16, block=1024, stats={})
        path = dict(zip(manifest["id"], manifest["path"]))
        todo = pairs[pairs["distance"] <= args.radius]
        start = time.perf_counter()
        features = {i: extract(path[i], contrast=args.contrast) for i in sorted(set(todo["a"]) | set(todo["b"]))}
        t_images = time.perf_counter() - start
        start = time.perf_counter()
        found = [match(features[a], features[b]) for a, b in zip(todo["a"], todo["b"])]
        t_pairs = time.perf_counter() - start
    inliers = np.zeros(len(pairs), int)
    usable = np.zeros(len(pairs), bool)
    rows = pairs.index.get_indexer(todo.index)
    inliers[rows] = [m.inliers for m in found]
    usable[rows] = [features[a].usable and features[b].usable for a, b in zip(todo["a"], todo["b"])]
    print(f"{len(manifest)} images, {len(true)} true pairs; {len(todo)} pairs within {args.radius} verified, "
          f"{len(features)} images: {1000 * t_images / max(1, len(features)):.0f} ms per image, "
          f"{1000 * t_pairs / max(1, len(todo)):.1f} ms per pair\n")
    truth_of = np.array([(a, b) in true for a, b in zip(pairs["a"], pairs["b"])])
    for name, ok in (("true pairs", truth_of[rows]), ("other pairs", ~truth_of[rows])):
        values = inliers[rows][ok]
        if len(values):
            print(f"{name}: {len(values)}, inliers median {np.median(values):.0f}, >= {args.min_inliers}: "
                  f"{np.mean(values >= args.min_inliers):.2f}, < 4: {np.mean(values < 4):.2f}")
    print("\n| scoring | AP | best pair F1 | R@P0.9 | other pairs at best F1 | recall by transform |\n|---|---|---|---|---|---|")
    near = pairs["nearest"] == 1
    for name, distance in (("plain", pairs["distance"].to_numpy()),
                           (f"verified x{args.factor:g}, unverified +{args.penalty:g}",
                            adjusted(pairs["distance"].to_numpy(), inliers, usable, min_inliers=args.min_inliers,
                                     factor=args.factor, penalty=args.penalty))):
        scored = pairs.assign(distance=distance)[near]
        s = curve(scored, true, lambda i: True, kinds)
        ranked = scored.sort_values(["distance", "a", "b"], kind="stable")
        hit = np.array([(a, b) in true for a, b in zip(ranked["a"], ranked["b"])])
        found_n = np.cumsum(hit)
        f1 = 2 * found_n / (np.arange(1, len(hit) + 1) + len(true))
        false_at_best = int((~hit[: int(f1.argmax()) + 1]).sum()) if len(hit) else 0
        print(f"| {name} | {s['ap']:.3f} | {s['pair_f1']:.3f} | {s['r@p90']:.3f} | {false_at_best} | "
              f"{s.get('kinds', '')} |")


if __name__ == "__main__":
    main()
