"""Mixed precision: the int8 embedder with its worst-quantised ops kept in float32, on the demo.

The per-op error (RMSE / scale, TensorFlow's ``QuantizationDebugger``) is measured on 20 demo images;
the ``--keep`` worst ops are denylisted (left in float) and the model is scored on the demo with its
planted copies, and timed model alone (LiteRT, batch 1, 2 threads) against fp32 and full int8 on
scene photos, in alternating rounds::

    PYTHONPATH=. /work/venv28/bin/python benchmarks/precision_mixed.py --keep 5
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from precision_models import TFLiteRunner, cosines, int8_flatbuffer, layer_errors, mixed_flatbuffer  # noqa: E402
from precision_quality import dataset_pixels, demo_set, score  # noqa: E402

from neardup.embed.models import build_embedder, get_spec  # noqa: E402
from neardup.embed.pixels import load_pixels  # noqa: E402
from neardup.embed.tflite import convert  # noqa: E402
from neardup.hash import hash_manifest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=int, nargs="+", default=[5])
    parser.add_argument("--scenes", type=Path, default=Path("/work/bench/scenes"))
    args = parser.parse_args()
    manifest, true, kinds, judged = demo_set(Path("/work/main"))
    pixels, size = dataset_pixels(manifest, "efficientnet-lite0")
    real = np.flatnonzero(~manifest["id"].astype(str).str.startswith("planted").to_numpy())
    calibration = pixels[np.sort(np.random.default_rng(0).choice(real, 100, replace=False))]
    model = build_embedder("efficientnet-lite0", size=size, weights="imagenet", pooling="max")
    errors = layer_errors(model, calibration, pixels[real[::22]][:20])
    print("worst ops (tensor, op, RMSE/scale):")
    for row in errors[:8]:
        print(f"  {row[0]} {row[1]} {row[2]:.3f}")
    models = {"fp32": convert(model), "int8": int8_flatbuffer(model, calibration)}
    for k in args.keep:
        models[f"int8, {k} worst ops float"] = mixed_flatbuffer(model, calibration, [e[0] for e in errors[:k]])
    hashes = hash_manifest(manifest, method="dhash", hash_size=8).vectors
    crop = get_spec("efficientnet-lite0").crop_fraction(size)
    photos = np.stack([load_pixels(str(p), size=size, crop_fraction=crop) for p in sorted(args.scenes.iterdir())[:192]])
    runners = {name: TFLiteRunner(content, threads=2, runtime="litert") for name, content in models.items()}
    rates = {name: [] for name in runners}
    for runner in runners.values():
        runner(photos[:16])
    for _ in range(2):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner(photos)
            rates[name].append(len(photos) / (time.perf_counter() - start))
    reference = runners["fp32"](pixels)
    print("\n| candidate | demo AP | best pair F1 | cosine min / mean (demo) | model alone img/s (photos) | vs fp32 | "
          "per-transform recall |\n|---|---|---|---|---|---|---|")
    for name, runner in runners.items():
        vectors = runner(pixels)
        cos = cosines(vectors, reference)
        s = score(vectors, manifest, hashes, true, kinds, judged)
        print(f"| {name} | {s['ap']:.3f} | {s['pair_f1']:.3f} | {cos.min():.4f} / {cos.mean():.4f} | "
              f"{max(rates[name]):.1f} | {max(rates[name]) / max(rates['fp32']):.2f}x | {s.get('kinds', '')} |", flush=True)


if __name__ == "__main__":
    main()
