"""Distinct camera-sized photos made procedurally, for measuring the pipeline at the size users have.

Each image is its own random scene (seeded by its index): a colour field of fractal noise (texture
at every scale, as foliage, soil or sky have), 25 to 70 shapes of random colour with edges and corners
(polygons, ellipses, strokes), some filled with fine noise, a slight blur and sensor noise, saved as
a JPEG. No two scenes share a patch, so geometric verification has nothing to prove between them,
while every image carries the 1,000 SIFT keypoints a camera photo has. Usable on its own::

    python benchmarks/scenes.py --out /tmp/scenes --n 25000
"""
from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

#: Side lengths (cells) of the noise octaves: coarse colour regions down to fine grain.
OCTAVES = (3, 6, 12, 24, 48, 96, 192, 400)


def scene(index: int, *, width: int = 800, height: int = 600, seed: int = 0) -> np.ndarray:
    """The RGB scene ``index`` as ``(height, width, 3)`` uint8; the same arguments give the same pixels."""
    import cv2

    rng = np.random.default_rng([seed, index])

    def noise(slope: float, channels: int) -> np.ndarray:
        field = np.zeros((height, width, channels), np.float32)
        for k, cells in enumerate(OCTAVES):
            small = rng.normal(size=(max(2, cells * height // width), cells, channels)).astype(np.float32)
            field += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).reshape(
                height, width, channels) / (2.0 ** (k * slope))
        return (field - field.mean()) / (field.std() + 1e-6)

    palette = rng.uniform(40, 215, 3), rng.uniform(20, 60, 3)  # mean colour and contrast per channel
    canvas = np.clip(palette[0] + palette[1] * noise(rng.uniform(0.3, 0.9), 3), 0, 255).astype(np.uint8)
    texture = noise(rng.uniform(0.1, 0.5), 1) * rng.uniform(10, 40)  # what fills the shapes: grain
    mask = np.zeros((height, width), np.uint8)
    for _ in range(rng.integers(25, 70)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        textured = rng.random() < 0.6
        target, colour = (mask, 255) if textured else (canvas, colour)
        kind = rng.integers(0, 4)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(8, 140)
        if kind == 0:  # a polygon
            angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 8)))
            radii = size * rng.uniform(0.4, 1.0, len(angles))
            points = np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
            cv2.fillPoly(target, [points.astype(np.int32)], colour, lineType=cv2.LINE_AA)
        elif kind == 1:  # an ellipse
            cv2.ellipse(target, (int(cx), int(cy)), (int(size), int(size * rng.uniform(0.2, 1))),
                        float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        elif kind == 2:  # a stroke
            end = (int(cx + rng.normal(0, 150)), int(cy + rng.normal(0, 150)))
            cv2.line(target, (int(cx), int(cy)), end, colour, int(rng.integers(1, 9)), cv2.LINE_AA)
        else:  # a patch of grain
            x0, y0 = int(cx), int(cy)
            x1, y1 = min(width, x0 + int(size)), min(height, y0 + int(size * rng.uniform(0.3, 1.5)))
            if x1 > x0 and y1 > y0:
                grain = rng.normal(0, rng.uniform(10, 50), (y1 - y0, x1 - x0, 1))
                canvas[y0:y1, x0:x1] = np.clip(canvas[y0:y1, x0:x1] + grain, 0, 255).astype(np.uint8)
            continue
        if textured:  # the shape in a colour of its own, with the grain (within its bounding box)
            ys, xs = np.nonzero(mask[::8, ::8])
            if not len(ys):  # a sliver the sampling missed
                mask[:] = 0
                continue
            box = (slice(max(0, ys.min() * 8 - 8), ys.max() * 8 + 16), slice(max(0, xs.min() * 8 - 8), xs.max() * 8 + 16))
            inside = mask[box] > 0
            fill = np.array(rng.integers(0, 256, 3), np.float32) + texture[box][inside]
            canvas[box][inside] = np.clip(fill, 0, 255).astype(np.uint8)
            mask[box] = 0
    canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.4, 1.2))
    noise = rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(rng.uniform(1, 4))
    return np.clip(canvas + noise, 0, 255).astype(np.uint8)


def _write(job: tuple[str, int, int, int, int]) -> None:
    import cv2

    out, index, width, height, seed = job
    rgb = scene(index, width=width, height=height, seed=seed)
    quality = 80 + index % 16
    cv2.imwrite(out, np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])


def make_scenes(out: Path, n: int, *, width: int = 800, height: int = 600, seed: int = 0,
                workers: int | None = None) -> list[Path]:
    """Write scenes ``0 .. n-1`` as ``out/sNNNNNN.jpg`` (those already there are kept); returns the paths."""
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"s{i:06d}.jpg" for i in range(n)]
    jobs = [(str(p), i, width, height, seed) for i, p in enumerate(paths) if not p.exists()]
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        for _ in tqdm(pool.map(_write, jobs, chunksize=16), total=len(jobs), desc="scenes", unit="img"):
            pass
    return paths


def bench_photos(folder: Path | None, n: int) -> tuple[Path, list[str]]:
    """The first ``n`` JPEGs of ``folder`` (sorted), or, without one, of ``n`` scenes generated (once) in
    the temp folder's ``neardup-bench-scenes``: the photos the speed benchmarks time by default."""
    if folder is None:
        import tempfile

        folder = Path(tempfile.gettempdir()) / "neardup-bench-scenes"
        make_scenes(folder, n)
    return folder, sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:n]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_scenes(args.out, args.n, seed=args.seed)
