"""Embedding at lower precision: speed against fp32 in the same run, cosine to fp32, detection quality.

For each model@size, on real photos (``--folder``, default 384 of the 800x600 scenes), every candidate
is timed end to end (decode + crop/resize in the project's input pipeline, then inference: what the
embed stage does) and model alone (pixels in memory), in alternating rounds against the project's fp32
TFLite model (TensorFlow's interpreter, XNNPACK, batch 1), the best round kept:

* ``int8 litert``: full int8 (per-channel weights, int8 activations, float ends), calibrated on a
  seeded sample of ``--calibration`` of the photos themselves, run by LiteRT (``ai-edge-litert``) at
  batch 1 and at the project's batch;
* ``bf16 openvino``: the fp32 flatbuffer compiled by OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``
  (and ``f32``, to separate the runtime from the precision).

``--quality`` then scores fp32 and each candidate on the demo (with its planted copies) and on
cifar10-dev (:mod:`precision_quality`). The extra runtimes live in their own venv
(``benchmarks/PRECISION_FINDINGS.md``)::

    PYTHONPATH=. /work/venv28/bin/python benchmarks/precision.py --quality
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from precision_models import OpenVINORunner, TFLiteRunner, cosines, int8_flatbuffer  # noqa: E402
from precision_quality import bench_arguments, both_sets, print_quality  # noqa: E402
from scenes import bench_photos  # noqa: E402

from neardup.embed.models import build_embedder, get_spec  # noqa: E402
from neardup.embed.pixels import pixel_batches  # noqa: E402
from neardup.embed.tflite import convert  # noqa: E402


#: Which optional runtimes are installed (neither is a dependency: PRECISION_FINDINGS.md says why).
LITERT = importlib.util.find_spec("ai_edge_litert") is not None
OPENVINO = importlib.util.find_spec("openvino") is not None


def candidates(model_name: str, size: int, calibration: np.ndarray, *, threads: int, batch: int,
               speed: bool = False) -> dict:
    """``{name: runner}``, fp32 first; ``speed``: also the batch-``batch`` and OpenVINO f32 variants.
    int8 runs on LiteRT where it is installed, else on TensorFlow's interpreter (the same XNNPACK
    kernels, the same speed: PRECISION_FINDINGS.md); bf16 only where OpenVINO is installed."""
    model = build_embedder(model_name, size=size, weights="imagenet", pooling="max")
    fp32, int8 = convert(model), int8_flatbuffer(model, calibration)
    tflite = "litert" if LITERT else "tf"
    runners = {"fp32 tflite": TFLiteRunner(fp32, threads=threads, runtime="tf"),
               f"int8 {tflite}": TFLiteRunner(int8, threads=threads, runtime=tflite)}
    if OPENVINO:
        runners["bf16 openvino"] = OpenVINORunner(fp32, threads=threads, precision="bf16")
    if speed:
        runners[f"int8 {tflite} b{batch}"] = TFLiteRunner(int8, threads=threads, runtime=tflite, batch=batch)
        if OPENVINO:
            runners[f"bf16 openvino b{batch}"] = OpenVINORunner(fp32, threads=threads, precision="bf16",
                                                                batch=batch)
            runners["f32 openvino"] = OpenVINORunner(fp32, threads=threads, precision="f32")
    return runners


def speed_rows(model_name: str, size: int, paths: list[str], *, threads: int, batch: int, rounds: int,
               calibration: int, seed: int) -> list[dict]:
    """One row per candidate: end-to-end and model-alone images/s (best round, and every round),
    ratios to fp32 in this run, cosine to fp32 on these photos."""
    crop = get_spec(model_name).crop_fraction(size)

    def decode(chunk):
        return np.concatenate([images for _, images in pixel_batches(chunk, size=size, crop_fraction=crop,
                                                                     batch_size=batch, threads=threads)])

    pixels = decode(paths)
    sample = np.sort(np.random.default_rng(seed).choice(len(paths), min(calibration, len(paths)), replace=False))
    runners = candidates(model_name, size, pixels[sample], threads=threads, batch=batch, speed=True)
    for runner in runners.values():
        runner(pixels[:batch])  # warm-up: weight packing, compiled kernels
    e2e = {name: [] for name in runners}
    alone = {name: [] for name in runners}
    for _ in range(rounds):  # alternate, so a noisy neighbour hurts every candidate alike
        for name, runner in runners.items():
            start = time.perf_counter()
            for _, images in pixel_batches(paths, size=size, crop_fraction=crop, batch_size=batch,
                                           threads=threads, overlap=False):
                runner(images)
            e2e[name].append(len(paths) / (time.perf_counter() - start))
            start = time.perf_counter()
            runner(pixels)
            alone[name].append(len(paths) / (time.perf_counter() - start))
    reference = runners["fp32 tflite"](pixels)
    rows = []
    for name, runner in runners.items():
        cos = cosines(runner(pixels), reference)
        rows.append({"model": f"{model_name}@{size}", "candidate": name, "e2e": max(e2e[name]),
                     "alone": max(alone[name]), "e2e_ratio": max(e2e[name]) / max(e2e["fp32 tflite"]),
                     "alone_ratio": max(alone[name]) / max(alone["fp32 tflite"]), "cos_min": float(cos.min()),
                     "cos_mean": float(cos.mean()), "rounds": e2e[name]})
    return rows


def print_speed(rows: list[dict]) -> None:
    print("\n| model | candidate | end to end img/s | vs fp32 | model alone img/s | vs fp32 | e2e / alone | "
          "cosine to fp32 min / mean | e2e rounds |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['candidate']} | {r['e2e']:.1f} | {r['e2e_ratio']:.2f}x | {r['alone']:.1f} | "
              f"{r['alone_ratio']:.2f}x | {r['e2e'] / r['alone']:.2f} | {r['cos_min']:.4f} / {r['cos_mean']:.4f} | "
              + " ".join(f"{x:.1f}" for x in r["rounds"]) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_arguments(parser, models=["efficientnet-lite0@224"], rounds=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not OPENVINO or not LITERT:
        print("not installed (neither is a dependency): " + ", ".join(
            n for n, ok in (("openvino (bf16 is not measured)", OPENVINO),
                            ("ai-edge-litert (int8 runs on TensorFlow's interpreter)", LITERT)) if not ok))

    if not args.no_speed:
        folder, paths = bench_photos(args.folder, args.n_images)
        print(f"{len(paths)} photos from {folder}, {args.threads} threads, batch {args.batch_size}, "
              f"best of {args.rounds} alternating rounds; int8 calibrated on {args.calibration} of them (seed {args.seed})")
        rows = []
        for spec in args.models:
            model, size = spec.rsplit("@", 1)
            rows += speed_rows(model, int(size), paths, threads=args.threads, batch=args.batch_size,
                               rounds=args.rounds, calibration=args.calibration, seed=args.seed)
            print_speed([r for r in rows if r["model"] == f"{model}@{size}"])
    if args.quality:
        def make(model, size, calibration):
            return candidates(model, size, calibration, threads=args.threads, batch=args.batch_size)

        model = args.models[0].rsplit("@", 1)[0]
        print_quality(both_sets(make, demo_root=args.demo_root, cifar=args.cifar if args.cifar.is_dir() else None,
                                model=model, calibration=args.calibration, seed=args.seed))


if __name__ == "__main__":
    main()
