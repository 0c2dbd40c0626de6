"""Full-integer (int8) quantisation of the embedder: detection quality and speed against float32.

The model is quantised with TensorFlow's converter, calibrated on a seeded sample of the folder's own
images (as the product would do it), and both flatbuffers embed the same images through the same
pixels. Each then goes through the default scoring (whitening, dHash mix, neighbour normalisation)
and the exact pair search, and the table gives AP, best pair F1 and recall per planted transform, as
:mod:`benchmarks.real_duplicates` computes them, plus the model-alone images/s and the cosine
between the two runtimes' vectors. It decided that ``embed`` has no int8 option (docs/performance.md)::

    .venv/bin/python benchmarks/int8_quality.py --images ../shared/data/cifar10-dev/images \\
        --truth ../shared/data/cifar10-dev/truth_pairs.csv --judged-prefix test/
    .venv/bin/python benchmarks/int8_quality.py --images data/raw --plant 200   # any folder of photos
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


def int8_flatbuffer(model, calibration: np.ndarray) -> bytes:
    """``model`` quantised to int8 weights and activations (float input and output), calibrated on
    ``calibration`` (n, size, size, 3) pixels."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--truth", type=Path, help="known duplicates (a,b or id,original CSV)")
    parser.add_argument("--plant", type=int, default=0, help="also plant this many copies (easy + hard transforms)")
    parser.add_argument("--judged-prefix", default="")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--calibration", type=int, default=200, help="images the int8 model is calibrated on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    manifest = scan_folder(args.images, symlinks="inside").manifest
    true, links = read_truth(args.truth) if args.truth else (set(), [])
    kinds = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.plant:
            manifest, planted_true, kinds = with_plants(manifest, links, Path(tmp) / "plants", n=args.plant,
                                                        transforms=EASY_TRANSFORMS + HARD_TRANSFORMS, seed=args.seed)
            true |= planted_true
        true = {p for p in true if set(p) <= set(manifest["id"])}
        spec = get_spec(args.model)
        size = spec.auto_size(manifest["width"].astype(int), manifest["height"].astype(int))
        crop = spec.crop_fraction(size)
        pixels = np.stack([load_pixels(p, size=size, crop_fraction=crop) for p in manifest["path"]])
        hashes = hash_manifest(manifest, method="dhash", hash_size=8).vectors
        model = build_embedder(args.model, size=size, weights="imagenet", pooling="max")
        sample = np.random.default_rng(args.seed).choice(len(pixels), min(args.calibration, len(pixels)), replace=False)
        flatbuffers = {"float32": convert(model), "int8": int8_flatbuffer(model, pixels[np.sort(sample)])}
    judged = (lambda i: i.startswith(args.judged_prefix)) if args.judged_prefix else (lambda i: True)
    ids = manifest["id"].to_numpy().astype(str)
    print(f"{len(ids)} images, {len(true)} true pairs, {args.model}@{size}, int8 calibrated on {len(sample)} "
          f"of them (seed {args.seed})\n")
    print("| precision | AP | best pair F1 | R@P0.9 | model alone, images/s | min / mean cosine to float32 |"
          + (" recall by transform |" if kinds else "") + "\n|---|---|---|---|---|---|" + ("---|" if kinds else ""))
    reference = None
    for name, content in flatbuffers.items():
        runner = TFLiteModel(content, threads=cpu_cores())
        runner(pixels[:8])  # warm-up
        start = time.perf_counter()
        vectors = runner(pixels)
        rate = len(pixels) / (time.perf_counter() - start)
        reference = vectors if reference is None else reference
        cos = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
        scored = descriptors(vectors, whiten=1.0, hashes=hashes, hash_weight=0.2)
        _, pairs, _ = cluster_vectors(scored, ids, [""] * len(ids), eps_values=np.array([0.5]), metric="cosine",
                                  normalize_k=10, candidates=10, search="exact", nprobe=16, block=1024, stats={})
        s = curve(pairs[pairs["nearest"] == 1], true, judged, kinds)
        print(f"| {name} | {s['ap']:.3f} | {s['pair_f1']:.3f} | {s['r@p90']:.3f} | {rate:.0f} | "
              f"{cos.min():.4f} / {cos.mean():.4f} |" + (f" {s.get('kinds', '')} |" if kinds else ""), flush=True)


if __name__ == "__main__":
    main()
