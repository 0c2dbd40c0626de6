"""Embedding throughput per runtime: the input pipeline alone, the model alone and end to end.

For each model@size, in one run and on the same images: the input pipeline (read + decode + crop and
resize, :mod:`neardup.embed.pixels`) alone, then each runtime's forward pass alone (on pixels already
in memory) and end to end (what the embed stage does), best of ``--rounds`` alternating rounds so a noisy
neighbour hurts all alike. Every figure is also printed as a ratio to the Keras runtime (the path
before the TFLite runtime existed) and as a share of the compute-bound limit: the model-alone figure
of the fastest runtime. The images are Cassava-sized (800x600) JPEGs cut from real photos that
installed packages ship, unless ``--folder`` points at your own images.

    python benchmarks/embed_throughput.py                      # make bench: Lite0@224, Lite2@260, B0@224
    python benchmarks/embed_throughput.py --models efficientnet-lite0@224 --n-images 1024

B0's ImageNet weights are a download this pipeline never makes; unless they are in the Keras cache
it runs with random weights, which cost the same time.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neardup.embed import Embedder  # noqa: E402
from neardup.embed.models import WeightsUnavailableError, cached_b_weights  # noqa: E402
from neardup.embed.pixels import pixel_batches  # noqa: E402
from neardup.engine import cpu_cores  # noqa: E402

RUNTIMES = ("keras", "tflite")


def make_photos(out: Path, n: int, *, width: int = 800, height: int = 600, seed: int = 0) -> list[Path]:
    """Write ``n`` JPEGs of ``width x height`` cut and rescaled from scikit-image / scikit-learn photos."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()] + list(load_sample_images().images)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        photo = Image.fromarray(photos[i % len(photos)])
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = photo.crop((x, y, x + cw, y + ch)).resize((width, height), Image.Resampling.BICUBIC)
        path = out / f"{i:05d}.jpg"
        crop.save(path, quality=90)
        paths.append(path)
    return paths


def weights_for(model: str) -> str:
    if model.startswith("efficientnet-b"):
        try:
            cached_b_weights(model, "imagenet")
        except WeightsUnavailableError:
            return "none"
    return "imagenet"


def best_rate(n: int, work, rounds: int) -> tuple[float, list[float]]:
    """``n / seconds`` of the fastest of ``rounds`` calls of ``work()``, and every round's rate."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        rates.append(n / (time.perf_counter() - start))
    return max(rates), rates


def bench_model(model: str, size: int, paths, *, batch_size: int, rounds: int, cache_dir: str) -> list[tuple]:
    """Rows ``(what, runtime, images/s, every round)`` for one model@size."""
    weights = weights_for(model)
    embedders = {rt: Embedder(model, size=size, weights=weights, batch_size=batch_size, pooling="max",
                              runtime=rt, cache_dir=cache_dir) for rt in RUNTIMES}
    some = embedders["tflite"]
    n = len(paths)

    def pipeline(threads):
        return [images for _, images in pixel_batches(paths, size=size, crop_fraction=some.crop_fraction,
                                                      batch_size=batch_size, threads=threads)]

    rows = []
    for threads in sorted({some.decode_threads, cpu_cores()}):
        rate, rates = best_rate(n, lambda: pipeline(threads), rounds)
        rows.append((f"input pipeline alone, {threads} thread(s)", "-", rate, rates))
    batches = pipeline(cpu_cores())
    for embedder in embedders.values():  # warm-up: traced functions, thread pools, XNNPACK packing
        embedder.infer(batches[0])
        for _ in embedder.batches(paths[:batch_size], desc="warm-up"):
            pass
    model_rates = {rt: [] for rt in RUNTIMES}
    e2e_rates = {rt: [] for rt in RUNTIMES}
    for _ in range(rounds):  # alternate, so a noisy neighbour hurts every runtime alike
        for rt, embedder in embedders.items():
            model_rates[rt] += best_rate(n, lambda: [embedder.infer(b) for b in batches], 1)[1]
            e2e_rates[rt] += best_rate(n, lambda: list(embedder.batches(paths, desc=f"end to end {rt}")), 1)[1]
    for rt in RUNTIMES:
        rows.append(("model alone", rt, max(model_rates[rt]), model_rates[rt]))
    for rt in RUNTIMES:
        rows.append(("end to end", rt, max(e2e_rates[rt]), e2e_rates[rt]))
    return rows, weights, some.decode_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["efficientnet-lite0@224", "efficientnet-lite2@260",
                                                        "efficientnet-b0@224"], help="model@size, ...")
    parser.add_argument("--n-images", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of each; the best is kept")
    parser.add_argument("--folder", type=Path, help="benchmark on these images instead of generated ones")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        if args.folder:
            files = sorted(p for p in args.folder.rglob("*") if p.is_file())[: args.n_images]
        else:
            files = make_photos(Path(tmp), args.n_images)
        paths = np.array([str(p) for p in files])
        print(f"\n{len(paths)} images ({'your folder' if args.folder else '800x600 JPEG'}), {cpu_cores()} cores, "
              f"batch {args.batch_size}, best of {args.rounds} rounds")
        for spec in args.models:
            model, size = spec.rsplit("@", 1)
            rows, weights, threads = bench_model(model, int(size), paths, batch_size=args.batch_size,
                                                 rounds=args.rounds, cache_dir=str(Path(tmp) / "cache"))
            keras = {what: rate for what, rt, rate, _ in rows if rt == "keras"}
            limit = max(rate for what, rt, rate, _ in rows if what == "model alone")
            print(f"\n{model} @ {size} ({weights} weights; end to end decodes in {threads} thread(s))")
            print(f"| {'what':<34} | {'runtime':<7} | {'images/s':>8} | {'vs keras':>8} | {'of limit':>8} | rounds")
            print(f"|{'-' * 36}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 10}|-------")
            for what, rt, rate, rates in rows:
                ratio = f"{rate / keras[what]:.2f}x" if what in keras else "-"
                print(f"| {what:<34} | {rt:<7} | {rate:>8.1f} | {ratio:>8} | {rate / limit:>8.2f} | "
                      + " ".join(f"{r:.1f}" for r in rates))
            e2e, alone = rows[-1][2], next(rate for what, rt, rate, _ in rows if what == "model alone" and rt == "tflite")
            print(f"tflite end to end / its model alone: {e2e / alone:.2f} (target >= 0.88: "
                  f"{'met' if e2e / alone >= 0.88 else 'NOT met'})")


if __name__ == "__main__":
    main()
