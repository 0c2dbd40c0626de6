"""The embed stage's input pipeline before and after issue 28: speed against the model, and what it costs in quality.

Two ways of making the model's input from a decoded image, the same decoding (:func:`neardup.decode.open_rgb`,
DCT-scaled JPEGs) before both:

* ``pillow`` (before): one antialiased bicubic resize of the crop by Pillow;
* ``opencv`` (now, :func:`neardup.embed.pixels.load_pixels`): a box filter by a whole factor where the crop
  is still over twice the output (formats without DCT scaling), then OpenCV's bicubic resize.

For each model@size, on real photos (``--folder``, default 384 of the generated 800x600 scenes), in
alternating rounds, best round kept: the input pipeline alone (CPU ms per image and images/s on every
core), the model alone (pixels in memory, the project's TFLite model) and end to end (what the embed
stage runs: :meth:`neardup.embed.Embedder.batches`), with end to end as a share of the model alone.

``--quality`` embeds the demo (with its planted copies), cifar10-dev (with 200 copies planted) and
large photos (``--photos``, default the 35 wallpapers, 1680 to 2560 px wide, with 100 copies planted) both
ways with Lite0's fp32 model and scores them under the default scoring (:mod:`precision_quality`): AP,
best pair F1, recall at precision 0.9, the recall of each planted transform at the best-F1 threshold,
and the cosine of each image's vector to the ``pillow`` one (on the photos too)::

    python benchmarks/input_pipeline.py --quality           # make bench
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from embed_throughput import weights_for  # noqa: E402
from precision_models import cosines  # noqa: E402
from precision_quality import bench_arguments, cifar_set, demo_set, planted_set, print_quality, scored_rows  # noqa: E402
from scenes import bench_photos  # noqa: E402

import neardup.embed.pixels as pixels_module  # noqa: E402
from neardup.decode import open_rgb  # noqa: E402
from neardup.embed import Embedder  # noqa: E402
from neardup.embed.models import get_spec  # noqa: E402
from neardup.engine import cpu_cores  # noqa: E402


def pillow_pixels(path: str, *, size: int, crop_fraction: float) -> np.ndarray:
    """The model input before issue 28: the same decoding, then Pillow's antialiased bicubic resize."""
    image = open_rgb(path, min_side=math.ceil(size / crop_fraction))
    box = pixels_module.crop_box(*image.size, crop_fraction)
    return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, box=box))


LOADERS = {"pillow": pillow_pixels, "opencv": pixels_module.load_pixels}


def with_loader(name: str):
    """Make :func:`neardup.embed.pixels.pixel_batches` (and so the embed stage) use loader ``name``."""
    pixels_module.load_pixels = LOADERS[name]


def timed(work) -> tuple[float, float]:
    """Wall seconds and process CPU seconds of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def speed_rows(model: str, size: int, paths: np.ndarray, *, batch: int, rounds: int, cache_dir: str) -> list[dict]:
    """Per loader: input alone (img/s, CPU ms/img), model alone, end to end (best of ``rounds``)."""
    embedder = Embedder(model, size=size, weights=weights_for(model), batch_size=batch, pooling="max",
                        runtime="tflite", cache_dir=cache_dir)
    crop, threads, n = embedder.crop_fraction, embedder.decode_threads, len(paths)

    def pipeline():
        return [images for _, images in pixels_module.pixel_batches(
            paths, size=size, crop_fraction=crop, batch_size=batch, threads=threads, overlap=embedder.overlap)]

    batches = {}
    for name in LOADERS:
        with_loader(name)
        batches[name] = pipeline()
    embedder.infer(batches["opencv"][0])  # warm-up
    stats = {name: {"input": [], "cpu": [], "alone": [], "e2e": []} for name in LOADERS}
    for _ in range(rounds):  # alternate, so a noisy neighbour hurts both alike
        for name in LOADERS:
            with_loader(name)
            wall, cpu = timed(pipeline)
            stats[name]["input"].append(n / wall)
            stats[name]["cpu"].append(cpu / n * 1e3)
            stats[name]["alone"].append(n / timed(lambda: [embedder.infer(b) for b in batches[name]])[0])
            stats[name]["e2e"].append(n / timed(lambda: list(embedder.batches(paths, desc=f"{name} end to end")))[0])
    with_loader("opencv")
    cos = cosines(np.concatenate([embedder.infer(b) for b in batches["opencv"]]),
                  np.concatenate([embedder.infer(b) for b in batches["pillow"]]))
    rows = []
    for name, s in stats.items():
        rows.append({"model": f"{model}@{size}", "input": name, "input_rate": max(s["input"]), "cpu": min(s["cpu"]),
                     "alone": max(s["alone"]), "e2e": max(s["e2e"]), "e2e_rounds": s["e2e"],
                     "cos": cos if name == "opencv" else None})
    return rows


def print_speed(rows: list[dict]) -> None:
    before = {r["model"]: r["e2e"] for r in rows if r["input"] == "pillow"}
    print("\n| model | input | input alone img/s | input CPU ms/img | model alone img/s | end to end img/s | "
          "e2e / model alone | e2e vs pillow | cosine to pillow min / mean (photos) | e2e rounds |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cos = "-" if r["cos"] is None else f"{r['cos'].min():.4f} / {r['cos'].mean():.4f}"
        print(f"| {r['model']} | {r['input']} | {r['input_rate']:.0f} | {r['cpu']:.2f} | {r['alone']:.1f} | "
              f"{r['e2e']:.1f} | {r['e2e'] / r['alone']:.2f} | {r['e2e'] / before[r['model']]:.2f}x | {cos} | "
              + " ".join(f"{x:.1f}" for x in r["e2e_rounds"]) + " |", flush=True)


def quality_rows(name: str, manifest, true, kinds, judged, *, model: str, cache_dir: str) -> list[dict]:
    """AP, F1, R@P0.9, per-transform recall and cosine to ``pillow`` of each loader on one dataset."""
    spec = get_spec(model)
    size = spec.auto_size(manifest["width"].astype(int), manifest["height"].astype(int))
    embedder = Embedder(model, size=size, weights="imagenet", batch_size=32, pooling="max", runtime="tflite",
                        cache_dir=cache_dir)
    print(f"{name}: {len(manifest)} images ({len(kinds)} planted), {len(true)} true pairs, {model}@{size}")
    vectors = ((loader, embedder.infer(np.stack([load(p, size=size, crop_fraction=embedder.crop_fraction)
                                                 for p in manifest["path"]])))
               for loader, load in LOADERS.items())
    return scored_rows(name, manifest, true, kinds, judged, vectors, column="input")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_arguments(parser, models=["efficientnet-lite0@224", "efficientnet-lite2@260", "efficientnet-b0@224"],
                    rounds=3)
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "data" / "wallpapers",
                        help="large photos (over twice the model's side), with a truth_pairs.csv if known")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_speed:
            folder, paths = bench_photos(args.folder, args.n_images)
            paths = np.array(paths)
            print(f"{len(paths)} photos from {folder}, {cpu_cores()} cores, batch {args.batch_size}, "
                  f"best of {args.rounds} alternating rounds")
            for spec in args.models:
                model, size = spec.rsplit("@", 1)
                print_speed(speed_rows(model, int(size), paths, batch=args.batch_size, rounds=args.rounds,
                                       cache_dir=tmp))
        if args.quality:
            model = args.models[0].rsplit("@", 1)[0]
            rows = quality_rows("demo", *demo_set(args.demo_root), model=model, cache_dir=tmp)
            if args.cifar.is_dir():
                rows += quality_rows("cifar10-dev", *cifar_set(args.cifar, Path(tmp) / "plants", plant=200, seed=0),
                                     model=model, cache_dir=tmp)
            if args.photos.is_dir():
                photos = planted_set(args.photos, args.photos / "truth_pairs.csv", Path(tmp) / "photo-plants",
                                     plant=100, seed=0)
                rows += quality_rows(args.photos.name, *photos, model=model, cache_dir=tmp)
            print_quality(rows, column="input", reference="pillow")


if __name__ == "__main__":
    main()
