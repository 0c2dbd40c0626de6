"""Geometric verification of candidate pairs: how far it separates copies from look-alikes, and how
verified pairs should move, measured on the pairs the default scoring proposes (docs/quality.md).

For a folder with known duplicates (and/or planted copies), the default configuration (Lite0@auto,
max pooling, whitening, dHash mix, neighbourhood normalisation) proposes the candidate pairs: each
image's 10 nearest and every pair within ``--radius``. As in the pipeline, the pairs within the radius
and each image's nearest neighbour are verified (:mod:`neardup.verify`, ``cluster.verify`` from
params.yaml, overridable here). The script prints how
many true and other pairs each rule proves or refutes, then AP, best pair F1, R@P0.9, recall per
planted transform at the best-F1 threshold and the different-original pairs proposed there, with the
plain distance and with the distances verification gives (proven x factor, refuted / factor), plus
the cost per image and per pair::

    .venv/bin/python benchmarks/verify_pairs.py --images ../shared/data/wallpapers \\
        --truth ../shared/data/wallpapers/truth_pairs.csv --plant 35
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_duplicates import curve, embed_cached, read_truth, with_plants  # noqa: E402

from neardup.cluster import cluster_vectors  # noqa: E402
from neardup.cluster.scoring import descriptors  # noqa: E402
from neardup.fetch.folder import scan_folder  # noqa: E402
from neardup.params import load_params  # noqa: E402
from neardup.engine import cpu_cores  # noqa: E402
from neardup.transforms import EASY_TRANSFORMS, HARD_TRANSFORMS  # noqa: E402
from neardup.keypoints import extract  # noqa: E402
from neardup.verify import match  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--plant", type=int, default=0)
    parser.add_argument("--radius", type=float, default=0.8)
    parser.add_argument("--min-inliers", type=int, help="default: params.yaml")
    parser.add_argument("--min-ratio", type=float, help="default: params.yaml")
    parser.add_argument("--refute-keypoints", type=int, help="default: params.yaml")
    parser.add_argument("--factor", type=float, help="default: params.yaml")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/neardup-bench-cache"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    params = load_params("cluster", Path(__file__).resolve().parents[1] / "params.yaml").verify
    params = replace(params, **{k: v for k, v in (("min_inliers", args.min_inliers), ("min_ratio", args.min_ratio),
                                                  ("refute_keypoints", args.refute_keypoints),
                                                  ("factor", args.factor)) if v is not None})
    manifest = scan_folder(args.images, symlinks="inside").manifest
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
        _, pairs, _ = cluster_vectors(vectors, emb.ids, [""] * len(emb.ids), eps_values=[args.radius], metric="cosine",
                                  normalize_k=10, candidates=10, search="exact", nprobe=16, block=1024, stats={})
        path = dict(zip(manifest["id"], manifest["path"]))
        # as the pipeline: every pair within the radius, and each image's nearest neighbour
        ends = pd.concat([pairs[["a", "distance"]].rename(columns={"a": "id"}),
                          pairs[["b", "distance"]].rename(columns={"b": "id"})]).groupby("id")["distance"].min()
        first = (pairs["distance"] <= pairs["a"].map(ends)) | (pairs["distance"] <= pairs["b"].map(ends))
        beyond = int((first & (pairs["distance"] > args.radius)).sum())
        chosen = ((pairs["distance"] <= args.radius) | first).to_numpy()
        todo = pairs[chosen]
        images = sorted(set(todo["a"]) | set(todo["b"]))
        start = time.perf_counter()
        with ThreadPoolExecutor(cpu_cores()) as pool:
            features = dict(zip(images, pool.map(lambda i: extract(path[i], max_side=params.max_side,
                                                                   max_keypoints=params.max_keypoints,
                                                                   min_side=params.min_side), images)))
        t_images = time.perf_counter() - start
        start = time.perf_counter()
        with ThreadPoolExecutor(cpu_cores()) as pool:
            found = list(pool.map(lambda ab: match(features[ab[0]], features[ab[1]]), zip(todo["a"], todo["b"])))
        t_pairs = time.perf_counter() - start
    keypoints = np.zeros(len(pairs), int)
    keypoints[chosen] = [min(len(features[a].points), len(features[b].points)) for a, b in zip(todo["a"], todo["b"])]
    enough, proven = np.zeros(len(pairs), bool), np.zeros(len(pairs), bool)
    enough[chosen] = [m.inliers >= params.min_inliers for m in found]
    proven[chosen] = [m.proves(params) for m in found]
    refuted = chosen & ~proven & (params.refute_keypoints > 0) & (keypoints >= params.refute_keypoints)
    truth_of = np.array([(a, b) in true for a, b in zip(pairs["a"], pairs["b"])]) & chosen
    far = (pairs["distance"] > args.radius).to_numpy()
    print(f"{len(manifest)} images, {len(true)} true pairs; {len(todo)} candidate pairs verified "
          f"({int(truth_of.sum())} true; {beyond} an image's nearest beyond {args.radius:g}, {int((far & truth_of).sum())} "
          f"true, {int((far & truth_of & proven).sum())} of them proven), {len(features)} images: "
          f"{1000 * t_images / max(1, len(features)):.0f} ms per image, {1000 * t_pairs / max(1, len(todo)):.1f} ms "
          f"per pair ({cpu_cores()} threads)\n")
    print(f"| rule | true pairs | other pairs |\n|---|---|---|\n"
          f"| >= {params.min_inliers} distinct inliers | {int((enough & truth_of).sum())} | {int((enough & ~truth_of).sum())} |\n"
          f"| proven (and >= {params.min_ratio:g} of the matches) | {int((proven & truth_of).sum())} | "
          f"{int((proven & ~truth_of).sum())} |\n"
          f"| refuted (not proven, both >= {params.refute_keypoints} keypoints) | {int((refuted & truth_of).sum())} | "
          f"{int((refuted & ~truth_of).sum())} |\n")
    print("| scoring | AP | best pair F1 | R@P0.9 | other pairs at best F1 | recall by transform |\n|---|---|---|---|---|---|")
    near = pairs["nearest"] == 1
    plain = pairs["distance"].to_numpy(dtype=float)
    moved = plain.copy()
    moved[proven] *= params.factor
    only_proof = moved.copy()
    moved[refuted] /= params.factor
    for name, distance in (("plain", plain), (f"proven x{params.factor:g}", only_proof),
                           (f"proven x{params.factor:g}, refuted / {params.factor:g}", moved)):
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
