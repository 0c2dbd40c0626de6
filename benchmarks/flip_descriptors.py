"""Flip-robust descriptors: the vector of an image combined with the vector of its mirror, measured.

Each image is embedded as it is and mirrored (Lite0@auto, max pooling, the TFLite runtime), and three
descriptors go through the default scoring (whitening, dHash mix, neighbourhood normalisation, each
image's 10 nearest): the plain vector, the sum of the two unit vectors, and their element-wise max.
Prints AP, best pair F1, R@P0.9 and recall per planted transform (docs/quality.md)::

    .venv/bin/python benchmarks/flip_descriptors.py --images ../shared/data/cifar10-dev/images \\
        --truth ../shared/data/cifar10-dev/truth_pairs.csv --judged-prefix test/
    .venv/bin/python benchmarks/flip_descriptors.py --images data/dataset/images --truth data/dataset/truth.csv --plant 200
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_duplicates import curve, read_truth, with_plants  # noqa: E402

from neardup.cluster import cluster_vectors  # noqa: E402
from neardup.cluster.scoring import descriptors  # noqa: E402
from neardup.embed.models import build_embedder, get_spec  # noqa: E402
from neardup.embed.pixels import load_pixels  # noqa: E402
from neardup.embed.tflite import TFLiteModel, convert  # noqa: E402
from neardup.engine import cpu_cores  # noqa: E402
from neardup.fetch.folder import scan_folder  # noqa: E402
from neardup.hash import hash_manifest  # noqa: E402
from neardup.transforms import EASY_TRANSFORMS, HARD_TRANSFORMS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--truth", required=True, type=Path)
    parser.add_argument("--plant", type=int, default=0)
    parser.add_argument("--judged-prefix", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    manifest = scan_folder(args.images, symlinks="inside").manifest
    true, links = read_truth(args.truth)
    kinds = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.plant:
            manifest, planted_true, kinds = with_plants(manifest, links, Path(tmp), n=args.plant,
                                                        transforms=EASY_TRANSFORMS + HARD_TRANSFORMS, seed=0)
            true |= planted_true
        true = {p for p in true if set(p) <= set(manifest["id"])}
        spec = get_spec("efficientnet-lite0")
        size = spec.auto_size(manifest["width"].astype(int), manifest["height"].astype(int))
        pixels = np.stack([load_pixels(p, size=size, crop_fraction=spec.crop_fraction(size))
                           for p in manifest["path"]])
        hashes = hash_manifest(manifest, method="dhash", hash_size=8).vectors
    model = TFLiteModel(convert(build_embedder("efficientnet-lite0", size=size, weights="imagenet", pooling="max")),
                        threads=cpu_cores())
    plain, mirrored = model(pixels), model(pixels[:, :, ::-1])
    ids = manifest["id"].to_numpy().astype(str)
    judged = (lambda i: i.startswith(args.judged_prefix)) if args.judged_prefix else (lambda i: True)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    print(f"{len(ids)} images, {len(true)} true pairs, Lite0@{size}\n")
    print("| descriptor | AP | best pair F1 | R@P0.9 |" + (" recall by transform |" if kinds else "")
          + "\n|---|---|---|---|" + ("---|" if kinds else ""))
    for name, vectors in (("plain", plain), ("mean(x, mirror)", unit(plain) + unit(mirrored)),
                          ("max(x, mirror)", np.maximum(plain, mirrored))):
        scored = descriptors(vectors, whiten=1.0, hashes=hashes, hash_weight=0.2)
        _, pairs, _ = cluster_vectors(scored, ids, [""] * len(ids), eps_values=[0.8], metric="cosine", normalize_k=10,
                                  candidates=10, search="exact", nprobe=16, block=1024, stats={})
        s = curve(pairs[pairs["nearest"] == 1], true, judged, kinds)
        print(f"| {name} | {s['ap']:.3f} | {s['pair_f1']:.3f} | {s['r@p90']:.3f} |"
              + (f" {s.get('kinds', '')} |" if kinds else ""), flush=True)


if __name__ == "__main__":
    main()
