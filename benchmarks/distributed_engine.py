"""The Dask engine's overhead, and what 10M / 100M images would cost on a cluster (not named
distributed.py: run as a script, that name would shadow the distributed package).

In one run, on this machine:

1. **Embedding** ``--images`` Cassava-sized JPEGs (Lite0@224, the offline default): here (``engine:
   local``), then on 1, 2 and 4 worker processes (``local:N``), each from an empty vector cache. The
   cluster start and the first shard per worker (its model load) are timed apart from the steady state.
2. **Pair search** of ``--vectors`` synthetic 1280-d descriptors (:func:`benchmarks.scale.synthetic`),
   exact (row blocks) and approximate (cells), knn + radius as the cluster stage runs them: the local
   threads, then 1, 2 and 4 workers, checked to give the local bytes.
3. **Per-task overhead:** empty tasks through the scheduler.

For every run: wall time, the work inside the tasks (Dask's task stream, or timed in the task) and
the engine's share, ``1 - work / (wall x workers)`` (scheduling, transfers, waiting). On 2 cores
more than 2 workers cannot be faster; the point is the overhead. Then a paper projection, from the
measured per-image, per-pair and per-cell costs of one core, of 10M and 100M images on 16, 64 and 256
single-core workers. Not a test::

    PYTHONPATH=. .venv/bin/python benchmarks/distributed_engine.py      # ~5 min on 2 cores
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

from benchmarks.embed_throughput import make_photos  # noqa: E402
from benchmarks.scale import DIM, synthetic  # noqa: E402
from neardup.embed.stage import embed_images  # noqa: E402
from neardup.engine import _close_local, dask_client  # noqa: E402
from neardup.images import scan_files  # noqa: E402
from neardup.params import EmbedParams, EngineParams  # noqa: E402
from neardup.search import Search  # noqa: E402
from neardup.search.approximate import CELL_TASKS_PER_WORKER  # noqa: E402
from neardup.search.tasks import DaskExecutor, ThreadExecutor  # noqa: E402

WORKERS = (1, 2, 4)
NPROBE, K, RADIUS = 16, 19, 0.1
PARAMS = EmbedParams(models=("efficientnet-lite0",), sizes=(224,), weights="imagenet", pooling="max", batch_size=32,
                     runtime="auto")


def _noop(x):
    return x


def task_overhead(client, n: int = 2000) -> float:
    """Seconds per empty task, submitted at once and gathered."""
    client.gather(client.map(_noop, range(50), pure=False))
    start = time.perf_counter()
    client.gather(client.map(_noop, range(n), pure=False))
    return (time.perf_counter() - start) / n


def compute_seconds(stream) -> float:
    """Seconds the workers spent computing, from a Dask task stream."""
    return sum(s["stop"] - s["start"] for task in stream for s in task["startstops"] if s["action"] == "compute")


def _fresh_cache(tmp: Path, name: str) -> str:
    """An empty vector cache that shares the converted models (so no run converts one)."""
    cache = tmp / name
    cache.mkdir()
    (cache / "tflite").symlink_to(tmp / "models" / "tflite")
    return str(cache)


def bench_embedding(paths, tmp: Path, shard: int) -> list[dict]:
    from distributed import get_task_stream

    manifest = scan_files(paths, root=paths[0].parent, set_name="b").manifest
    embed_images("efficientnet-lite0", 224, manifest.head(2), params=PARAMS, cache_dir=str(tmp / "models"))
    start = time.perf_counter()
    want = embed_images("efficientnet-lite0", 224, manifest, params=PARAMS, cache_dir=_fresh_cache(tmp, "local"))
    wall = time.perf_counter() - start
    rows = [{"engine": "local (2 cores)", "workers": 2, "wall": wall, "work": float("nan")}]
    for n in WORKERS:
        engine = EngineParams(kind="dask", address=f"local:{n}", shard_size=shard)
        start = time.perf_counter()
        with dask_client(engine.address) as client:
            started = time.perf_counter() - start
            start = time.perf_counter()  # one shard per worker: each loads the model once
            embed_images("efficientnet-lite0", 224, manifest.head(shard * n), params=PARAMS,
                         cache_dir=_fresh_cache(tmp, f"warm{n}"), engine=engine)
            first = time.perf_counter() - start
            with get_task_stream(client) as stream:
                start = time.perf_counter()
                got = embed_images("efficientnet-lite0", 224, manifest, params=PARAMS,
                                   cache_dir=_fresh_cache(tmp, f"dask{n}"), engine=engine)
                wall = time.perf_counter() - start
            assert np.array_equal(got.vectors, want.vectors), "not the local vectors"
            rows.append({"engine": f"dask local:{n}", "workers": n, "start": started, "first": first, "wall": wall,
                         "work": compute_seconds(stream.data), "overhead": task_overhead(client)})
        _close_local()
    for r in rows:
        r["rate"] = len(manifest) / r["wall"]
    return rows


class Timed:
    """A runner that also sums the seconds spent inside its tasks (timed where they run)."""

    def __init__(self, runner):
        self.runner, self.workers, self.work, self.tasks = runner, runner.workers, 0.0, 0

    def map(self, fn, arrays, tasks):
        for seconds, result in self.runner.map(_timed, arrays, [(fn, *task) for task in tasks]):
            self.work, self.tasks = self.work + seconds, self.tasks + 1
            yield result


def _timed(arrays, fn, *args):
    start = time.perf_counter()
    result = fn(arrays, *args)
    return time.perf_counter() - start, result


def bench_search(n: int, tmp: Path) -> list[dict]:
    points = synthetic(n)
    rows = []
    for mode in ("exact", "approximate"):
        def run(runner):
            timed = Timed(runner)
            search = Search(points, n_ref=n, mode=mode, nprobe=NPROBE, block=1024, executor=timed)
            start = time.perf_counter()
            found = (search.knn(K), *search.radius(np.full(n, RADIUS), "cosine"))
            return found, time.perf_counter() - start, timed, search

        want, wall, timed, search = run(ThreadExecutor())
        nlist = search.index.nlist if search.index is not None else 0
        rows.append({"mode": mode, "engine": f"local ({timed.workers} threads)", "workers": timed.workers,
                     "wall": wall, "work": timed.work, "tasks": timed.tasks, "nlist": nlist})
        for workers in WORKERS:
            with dask_client(f"local:{workers}") as client:
                got, wall, timed, _ = run(DaskExecutor(client, tmp / "engine"))
                assert all(np.array_equal(a, b) for a, b in zip(want, got)), "not the local bytes"
                rows.append({"mode": mode, "engine": f"dask local:{workers}", "workers": workers, "wall": wall,
                             "work": timed.work, "tasks": timed.tasks, "nlist": nlist})
            _close_local()
    return rows


def share(r) -> str:
    return "-" if np.isnan(r["work"]) else f"{max(0.0, 1 - r['work'] / (r['wall'] * r['workers'])):.0%}"


def projection(embed_rows, search_rows, n_images: int, n_vectors: int) -> None:
    one = next(r for r in embed_rows if r["engine"] == "dask local:1")
    per_image = one["work"] / n_images  # core-seconds per image, inside the tasks
    exact = next(r for r in search_rows if r["mode"] == "exact" and r["engine"].startswith("local"))
    per_pair = exact["work"] / (n_vectors ** 2)  # knn + radius: each pair once per pass (upper triangle)
    approx = next(r for r in search_rows if r["mode"] == "approximate" and r["engine"].startswith("local"))
    per_product = approx["work"] / (2 * n_vectors * NPROBE * n_vectors / approx["nlist"])  # query x member
    overhead = max(r.get("overhead", 0.0) for r in embed_rows)
    print(f"\nmeasured per core: {1000 * per_image:.1f} ms per image embedded, {1e9 * per_pair:.2f} ns per pair "
          f"(exact), {1e9 * per_product:.2f} ns per query-member product (approximate), "
          f"{1000 * overhead:.2f} ms per task")
    print("\n| images | workers | embed | exact search | approximate search | tasks (embed / search) "
          "| descriptors on shared storage | memory per worker |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (10_000_000, 100_000_000):
        cells = min(4 * np.sqrt(n), n // 39)
        members = n / cells
        for w in (16, 64, 256):
            embed_h = (n * per_image + n / 1024 * overhead) / w / 3600
            exact_d = n * n * per_pair / w / 86400  # days
            tasks = 2 * min(cells, CELL_TASKS_PER_WORKER * w)  # knn and radius passes over grouped cells
            approx_h = (2 * n * NPROBE * members * per_product + tasks * overhead) / w / 3600
            task_mb = (members * NPROBE + members) * DIM * 4 / 1e6  # a cell's visiting queries and members
            print(f"| {n // 1_000_000}M | {w} | {embed_h:,.1f} h | {exact_d:,.1f} days | {approx_h:,.1f} h "
                  f"| {n // 1024:,} / {tasks:,.0f} | {n * DIM * 4 / 1e9:,.0f} GB (float32) "
                  f"| ~{task_mb:,.0f} MB per cell task, plus the model (~50 MB) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--shard", type=int, default=64, help="images per Dask task")
    parser.add_argument("--vectors", type=int, default=20_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "photos").mkdir()
        embed_rows = bench_embedding(make_photos(tmp / "photos", args.images), tmp, args.shard)
        print(f"\nembedding {args.images} 800x600 JPEGs, Lite0@224 (tflite), {args.shard} images per task:")
        print("| engine | cluster start (s) | first shard per worker (s) | steady wall (s) | images/s "
              "| work in tasks (s) | engine share | per-task overhead (ms) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in embed_rows:
            extra = (f"{r['start']:.1f} | {r['first']:.1f}" if "start" in r else "- | -")
            overhead = f"{1000 * r['overhead']:.2f}" if "overhead" in r else "-"
            work = "-" if np.isnan(r["work"]) else f"{r['work']:.1f}"
            print(f"| {r['engine']} | {extra} | {r['wall']:.1f} | {r['rate']:.1f} | {work} | {share(r)} | {overhead} |")
        search_rows = bench_search(args.vectors, tmp)
        print(f"\npair search, {args.vectors:,} x {DIM} descriptors (knn {K} + radius {RADIUS}), the local bytes on "
              "every engine:")
        print("| search | engine | tasks | wall (s) | work in tasks (s) | engine share |")
        print("|---|---|---|---|---|---|")
        for r in search_rows:
            print(f"| {r['mode']} | {r['engine']} | {r['tasks']} | {r['wall']:.1f} | {r['work']:.1f} | {share(r)} |")
        projection(embed_rows, search_rows, args.images, args.vectors)


if __name__ == "__main__":
    main()
