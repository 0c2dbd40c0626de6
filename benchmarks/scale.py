"""Clustering at scale: this project's sparse pair graph (exact and approximate) against the peers' designs.

Synthetic 1280-d float32 embeddings (the Lite0 width): points around a few thousand centres (a
dataset's look-alike structure) plus 1 % planted near-duplicate pairs. For each N, each method runs
in a child process, which reports wall time and peak memory (VmHWM, the data included):

- ``exact``: :func:`neardup.cluster.scoring.pair_graph`, blocked BLAS products, then DBSCAN on the graph;
- ``approximate``: the same through the cell index of :mod:`neardup.search.approximate`, with the measured
  recall of the exact pairs;
- ``sklearn DBSCAN (raw vectors)``: ``DBSCAN(metric='cosine')`` on the vectors, as peers run it;
- ``dense similarity matrix``: an N x N float32 cosine matrix, as idealo/imagededup builds it.

A method that cannot fit in the memory limit, or would take far longer than the limit, is skipped
with the figure it would need. Not a test::

    PYTHONPATH=. .venv/bin/python benchmarks/scale.py --sizes 10000 100000 1000000
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np

DIM = 1280
RADIUS = 0.1  # cosine distance; the planted pairs sit at about 0.02


def synthetic(n: int, *, seed: int = 0) -> np.ndarray:
    """(n, DIM) float32 unit rows (as the product's descriptors are): clustered points, the last 1 %
    copies of random others (cosine distance ~0.02)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(10, n // 200), DIM)).astype(np.float32)
    n_copies = n // 100
    x = np.empty((n, DIM), np.float32)
    for start in range(0, n - n_copies, 100_000):  # in blocks, to keep the temporary memory small
        stop = min(n - n_copies, start + 100_000)
        x[start:stop] = centres[rng.integers(len(centres), size=stop - start)]
        x[start:stop] += 0.9 * rng.normal(size=(stop - start, DIM)).astype(np.float32)
    src = rng.integers(n - n_copies, size=n_copies)
    x[n - n_copies:] = x[src] + 0.2 * rng.normal(size=(n_copies, DIM)).astype(np.float32)
    for start in range(0, n, 100_000):
        x[start:start + 100_000] /= np.linalg.norm(x[start:start + 100_000], axis=1, keepdims=True)
    return x


def peak_gb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def run_method(name: str, x: np.ndarray, out) -> None:
    from sklearn.cluster import DBSCAN

    from neardup.cluster import dbscan_labels
    from neardup.cluster.scoring import pair_graph

    start = time.perf_counter()
    extra = ""
    if name in ("exact", "approximate"):
        stats = {}
        graph = pair_graph(x, radius=RADIUS, search=name, stats=stats)
        labels = dbscan_labels(graph, eps=RADIUS)
        extra = f"{stats['n_edges'] // 2} pairs"
        if "search_recall" in stats:
            extra += f", recall of exact pairs {stats['search_recall']:.4f}"
    elif name == "sklearn":
        labels = DBSCAN(eps=RADIUS, min_samples=1, metric="cosine", algorithm="brute").fit_predict(x)
    else:  # dense
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = unit @ unit.T
        n_pairs = int(((sim >= 1 - RADIUS).sum() - len(x)) // 2)
        out.put((time.perf_counter() - start, peak_gb(), f"{n_pairs} pairs (no grouping)"))
        return
    out.put((time.perf_counter() - start, peak_gb(), f"{len(set(labels.tolist()))} groups; {extra}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--memory-gb", type=float, default=24.0)
    parser.add_argument("--max-minutes", type=float, default=30.0, help="skip methods estimated to take longer")
    args = parser.parse_args()
    ctx = mp.get_context("fork")
    print("| N | method | seconds | peak GB | notes |\n|---|---|---|---|---|")
    rate = {}  # pair distances per second of each all-pairs method, measured at the smallest N
    for n in args.sizes:
        x = synthetic(n)
        data_gb = x.nbytes / 2**30
        for name in ("exact", "approximate", "sklearn", "dense"):
            need_gb = data_gb + (n * n * 4 / 2**30 if name == "dense" else 0)
            minutes = n * n / rate[name] / 60 if name in rate and name in ("exact", "sklearn") else 0
            if need_gb > args.memory_gb:
                print(f"| {n:,} | {name} | - | - | skipped: would need {need_gb:,.0f} GB |", flush=True)
                continue
            if minutes > args.max_minutes:
                print(f"| {n:,} | {name} | - | - | skipped: would take about {minutes:,.0f} min |", flush=True)
                continue
            out = ctx.Queue()
            proc = ctx.Process(target=run_method, args=(name, x, out))
            proc.start()
            seconds, peak, notes = out.get()
            proc.join()
            rate.setdefault(name, n * n / seconds)
            print(f"| {n:,} | {name} | {seconds:.1f} | {peak:.2f} | {notes} |", flush=True)
        del x


if __name__ == "__main__":
    main()
