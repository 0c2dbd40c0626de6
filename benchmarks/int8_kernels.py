"""Why TensorFlow's bundled interpreter ran the int8 embedder at 1.15x fp32 while LiteRT ran it at 2.2x.

One Lite0@224 fp32 flatbuffer and two full-int8 ones (per-channel weights, calibrated on a seeded
sample of the photos themselves: int8 input / output, and float ends with quantize / dequantize ops)
are each run, on the same decoded pixels (model alone), by ``tf.lite.Interpreter`` and by
``ai_edge_litert``, at batch 1 and at the project's batch, with XNNPACK on and off. Rounds
alternate so a noisy neighbour hurts every row alike; the best round is kept. Which ops XNNPACK
took is read from each interpreter's node list (``_get_ops_details``: ops left outside the
``DELEGATE`` nodes run on TFLite's builtin kernels)::

    PYTHONPATH=. /work/venv28/bin/python benchmarks/int8_kernels.py --folder /work/bench/scenes
"""
from __future__ import annotations

import argparse
import collections
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from precision_models import TFLiteRunner, cosines, int8_flatbuffer  # noqa: E402

from neardup.embed.models import build_embedder, get_spec  # noqa: E402
from neardup.embed.pixels import load_pixels  # noqa: E402
from neardup.embed.tflite import convert  # noqa: E402


def node_summary(runner: TFLiteRunner) -> str:
    """Ops in the interpreter's execution plan after delegation: ``DELEGATE x n`` and whatever is left."""
    ops = collections.Counter(op["op_name"] for op in runner.interpreter._get_ops_details())
    return ", ".join(f"{name} x{count}" for name, count in ops.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path("/work/bench/scenes"))
    parser.add_argument("--n-images", type=int, default=192)
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    spec, size = get_spec("efficientnet-lite0"), 224
    crop = spec.crop_fraction(size)
    rng = np.random.default_rng(args.seed)
    calib_paths = [files[i] for i in np.sort(rng.choice(len(files), args.calibration, replace=False))]
    calibration = np.stack([load_pixels(str(p), size=size, crop_fraction=crop) for p in calib_paths])
    pixels = np.stack([load_pixels(str(p), size=size, crop_fraction=crop) for p in files[: args.n_images]])
    model = build_embedder("efficientnet-lite0", size=size, weights="imagenet", pooling="max")
    start = time.perf_counter()
    models = {"fp32": convert(model), "int8, int8 ends": int8_flatbuffer(model, calibration, int8_io=True),
              "int8, float ends": int8_flatbuffer(model, calibration, int8_io=False)}
    print(f"converted in {time.perf_counter() - start:.0f} s; {len(pixels)} photos 800x600 -> {size}, "
          f"{args.threads} threads, int8 calibrated on {len(calibration)} of {len(files)} (seed {args.seed})")
    runners = {}
    for name, content in models.items():
        for runtime in ("tf", "litert"):
            for batch in (1, args.batch_size):
                runners[(name, runtime, batch, True)] = TFLiteRunner(content, threads=args.threads, runtime=runtime,
                                                                     batch=batch)
            runners[(name, runtime, 1, False)] = TFLiteRunner(content, threads=args.threads, runtime=runtime,
                                                              xnnpack=False)
    for runner in runners.values():
        runner(pixels[: args.batch_size])  # warm-up: XNNPACK weight packing
    rates = {key: [] for key in runners}
    for _ in range(args.rounds):
        for key, runner in runners.items():
            start = time.perf_counter()
            runner(pixels)
            rates[key].append(len(pixels) / (time.perf_counter() - start))
    reference = runners[("fp32", "tf", 1, True)](pixels)
    base = {rt: max(rates[("fp32", rt, 1, True)]) for rt in ("tf", "litert")}
    print("\n| model | runtime | batch | XNNPACK | images/s | vs fp32 same runtime, batch 1 | cosine to fp32 "
          "min / mean | rounds |\n|---|---|---|---|---|---|---|---|")
    for key, runner in runners.items():
        name, runtime, batch, xnn = key
        cos = cosines(runner(pixels[:64]), reference[:64])
        print(f"| {name} | {runtime} | {batch} | {'on' if xnn else 'off'} | {max(rates[key]):.1f} | "
              f"{max(rates[key]) / base[runtime]:.2f}x | {cos.min():.4f} / {cos.mean():.4f} | "
              + " ".join(f"{r:.1f}" for r in rates[key]) + " |")
    print("\nexecution plan after delegation (batch 1, XNNPACK on):")
    for name in models:
        for runtime in ("tf", "litert"):
            print(f"  {name}, {runtime}: {node_summary(runners[(name, runtime, 1, True)])}")


if __name__ == "__main__":
    main()
