"""Detection quality on a folder with known duplicate pairs: each scoring option next to pHash / dHash.

Runs the product's own code (the Embedder, the hashes, :mod:`neardup.cluster.scoring`, the sparse DBSCAN)
for a list of named configurations and prints one table row each: pair-level average precision,
best pair F1, recall at precision >= 0.9, best group F1 over the eps sweep (DBSCAN groups scored on
the pairs inside them) and seconds (embedding + scoring). Not a test: it needs data the repository
does not ship, e.g. the ciFAIR CIFAR-10 pairs::

    .venv/bin/python benchmarks/real_duplicates.py --images ../shared/data/cifar10-dev/images \\
        --truth ../shared/data/cifar10-dev/truth_pairs.csv --judged-prefix test/

``--truth`` is a CSV of pairs (``a,b``) or a fetch truth table (``id,original``, copies of an
original are all duplicates of each other). ``--plant N`` adds N copies made with the hard (or
easy) transforms of :mod:`neardup.transforms` and reports recall per transform. ``--judged-prefix``: only pairs with at least one id
under this prefix count as proposals (ciFAIR never judged train-train pairs).
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neardup.cluster import cluster_vectors  # noqa: E402
from neardup.cluster.scoring import descriptors  # noqa: E402
from neardup.contract import Embeddings  # noqa: E402
from neardup.embed import Embedder  # noqa: E402
from neardup.fetch.folder import scan_folder  # noqa: E402
from neardup.hash import hash_manifest, is_hash_method  # noqa: E402
from neardup.plant import plant_copies  # noqa: E402
from neardup.transforms import EASY_TRANSFORMS, HARD_TRANSFORMS  # noqa: E402

#: name -> (model, size, pooling, whiten, hash, hash_weight, normalize_k, metric)
CONFIGS = {
    "phash": ("phash", 0, "", 0.0, "", 0.0, 0, "cosine"),
    "dhash": ("dhash", 0, "", 0.0, "", 0.0, 0, "cosine"),
    "seed: lite0@224 avg euclidean": ("efficientnet-lite0", 224, "avg", 0.0, "", 0.0, 0, "euclidean"),
    "lite0@224 avg cosine": ("efficientnet-lite0", 224, "avg", 0.0, "", 0.0, 0, "cosine"),
    "lite0@224 max": ("efficientnet-lite0", 224, "max", 0.0, "", 0.0, 0, "cosine"),
    "lite0@224 max +whiten": ("efficientnet-lite0", 224, "max", 1.0, "", 0.0, 0, "cosine"),
    "lite0@224 max +dhash": ("efficientnet-lite0", 224, "max", 0.0, "dhash", 0.2, 0, "cosine"),
    "lite0@224 max +whiten +dhash": ("efficientnet-lite0", 224, "max", 1.0, "dhash", 0.2, 0, "cosine"),
    "lite0@224 max +whiten +dhash +nn10": ("efficientnet-lite0", 224, "max", 1.0, "dhash", 0.2, 10, "cosine"),
    "lite0@auto max": ("efficientnet-lite0", "auto", "max", 0.0, "", 0.0, 0, "cosine"),
    "lite0@auto max +whiten": ("efficientnet-lite0", "auto", "max", 1.0, "", 0.0, 0, "cosine"),
    "lite0@auto max +dhash": ("efficientnet-lite0", "auto", "max", 0.0, "dhash", 0.2, 0, "cosine"),
    "lite0@auto max +whiten +dhash": ("efficientnet-lite0", "auto", "max", 1.0, "dhash", 0.2, 0, "cosine"),
    "lite0@auto max +whiten +phash": ("efficientnet-lite0", "auto", "max", 1.0, "phash", 0.2, 0, "cosine"),
    "lite0@auto max +whiten +dhash +nn10": ("efficientnet-lite0", "auto", "max", 1.0, "dhash", 0.2, 10, "cosine"),
    "lite0@auto max +nn10": ("efficientnet-lite0", "auto", "max", 0.0, "", 0.0, 10, "cosine"),
    "lite2@auto max +whiten +dhash": ("efficientnet-lite2", "auto", "max", 1.0, "dhash", 0.2, 0, "cosine"),
}
#: eps swept for the group F1: plain cosine distances of duplicates stay below 0.5, whitened ones run to ~0.9
EPS = np.round(np.arange(0.02, 0.52, 0.02), 3)
EPS_WHITENED = np.round(np.arange(0.04, 1.0, 0.04), 3)


def read_truth(path: Path) -> tuple[set, list]:
    """Known pairs and links: a CSV of judged pairs (``a,b``, taken as listed) or a fetch truth table
    (``id,original``, closed: copies of one original all match)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if {"a", "b"} <= set(table.columns):
        links = list(zip(table["a"], table["b"]))
        return {tuple(sorted(p)) for p in links}, links
    links = list(zip(table["id"], table["original"]))
    return closed_pairs(links), links


def closed_pairs(links) -> set[tuple[str, str]]:
    """Unordered pairs of the transitive closure of ``links`` (copies of one original all match)."""
    parent = {}

    def root(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in links:
        parent[root(a)] = root(b)
    members = {}
    for x in list(parent):
        members.setdefault(root(x), []).append(x)
    return {tuple(sorted(p)) for m in members.values() for p in itertools.combinations(m, 2)}


def with_plants(manifest: pd.DataFrame, links, out: Path, *, n: int, transforms, seed: int = 0):
    """``manifest`` with ``n`` planted copies (:func:`neardup.plant.plant_copies`) added, the true pairs
    involving a copy (closed with ``links``: a copy matches its original, the original's known
    duplicates and the other copies of it) and ``{pair: transform}`` of each copy and its original."""
    planted = plant_copies(manifest, out, n=n, transforms=transforms, seed=seed)
    plant_links = list(zip(planted.truth["id"], planted.truth["original"]))
    copies = set(planted.truth["id"])
    true = {p for p in closed_pairs(list(links) + plant_links) if set(p) & copies}
    kinds = {tuple(sorted(p)): t for p, t in zip(plant_links, planted.truth["transform"])}
    return pd.concat([manifest, planted.manifest], ignore_index=True), true, kinds


def curve(pairs: pd.DataFrame, true: set, judged, kinds: dict | None = None) -> dict:
    """AP, best F1, recall at precision >= 0.9 of pairs ranked by distance, and the recall of each
    kind of pair (e.g. planted transform) at the best-F1 threshold."""
    pairs = pairs[[judged(a) or judged(b) for a, b in zip(pairs["a"], pairs["b"])]]
    ranked = pairs.sort_values(["distance", "a", "b"], kind="stable")
    hit = np.array([(a, b) in true for a, b in zip(ranked["a"], ranked["b"])], bool)
    if not hit.any():
        return {"ap": 0.0, "pair_f1": 0.0, "r@p90": 0.0}
    found = np.cumsum(hit)
    precision, recall = found / np.arange(1, len(hit) + 1), found / len(true)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    found_at_best = set(zip(ranked["a"][:int(f1.argmax()) + 1], ranked["b"][:int(f1.argmax()) + 1]))
    by_kind = {}
    for pair, kind in (kinds or {}).items():
        by_kind.setdefault(kind, []).append(pair in found_at_best)
    return {"ap": precision[hit].sum() / len(true), "pair_f1": f1.max(),
            "r@p90": recall[precision >= 0.9].max() if (precision >= 0.9).any() else 0.0,
            "kinds": " ".join(f"{k} {np.mean(v):.2f}" for k, v in sorted(by_kind.items()))}


def best_group_f1(groups: pd.DataFrame, true: set, judged) -> tuple[float, float]:
    """Best F1 over the sweep of the pairs inside DBSCAN groups, and its eps (pairs counted, not listed)."""
    best = (0.0, float("nan"))
    for eps, at in groups.groupby("eps"):
        group_of = dict(zip(at["id"], at["group"]))
        tp = sum(1 for a, b in true if a in group_of and group_of[a] == group_of.get(b))
        sizes = at.assign(judged=[judged(i) for i in at["id"]]).groupby("group")["judged"].agg(["size", "sum"])
        unjudged = sizes["size"] - sizes["sum"]
        proposed = int((sizes["size"] * (sizes["size"] - 1) // 2 - unjudged * (unjudged - 1) // 2).sum())
        if tp:
            p, r = tp / proposed, tp / len(true)
            best = max(best, (2 * p * r / (p + r), float(eps)))
    return best


def embed_cached(manifest, cache: Path, model: str, size, pooling: str) -> tuple[Embeddings, float]:
    """Embeddings (or hashes) of ``manifest`` and the seconds they took, computed once per cache dir."""
    path = cache / f"{model}_{size}_{pooling}.npz"
    timing = path.with_suffix(".seconds")
    if not path.is_file():
        start = time.perf_counter()
        if is_hash_method(model):
            emb = hash_manifest(manifest, method=model, hash_size=8)
        else:
            emb = Embedder(model, size=size, weights="imagenet", batch_size=32, pooling=pooling,
                           manifest=manifest).embed_manifest(manifest)
        emb.save(path)
        timing.write_text(f"{time.perf_counter() - start:.3f}")
    return Embeddings.load(path), float(timing.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--truth", type=Path, help="known duplicates (a,b or id,original CSV)")
    parser.add_argument("--plant", type=int, default=0, help="also plant this many transformed copies")
    parser.add_argument("--plant-transforms", default="hard", choices=["easy", "hard", "all"])
    parser.add_argument("--judged-prefix", default="")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/neardup-bench-cache"))
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), help="names from CONFIGS")
    parser.add_argument("--search", default="exact", choices=["exact", "approximate"],
                        help="pair search (cluster.search); approximate adds its measured recall")
    parser.add_argument("--nprobe", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    manifest = scan_folder(args.images, symlinks="inside").manifest
    true, links = read_truth(args.truth) if args.truth else (set(), [])
    cache = args.cache / args.images.resolve().as_posix().strip("/").replace("/", "_")
    cache.mkdir(parents=True, exist_ok=True)
    kinds = {}
    if args.plant:
        names = {"easy": EASY_TRANSFORMS, "hard": HARD_TRANSFORMS, "all": EASY_TRANSFORMS + HARD_TRANSFORMS}
        manifest, planted_true, kinds = with_plants(manifest, links, cache / f"plants_{args.plant}_{args.plant_transforms}",
                                                    n=args.plant, transforms=names[args.plant_transforms])
        true |= planted_true
        cache = cache / f"with_{args.plant}_{args.plant_transforms}"
        cache.mkdir(exist_ok=True)
    true = {p for p in true if set(p) <= set(manifest["id"])}
    judged = (lambda i: i.startswith(args.judged_prefix)) if args.judged_prefix else (lambda i: True)
    print(f"{len(manifest)} images, {len(true)} true pairs\n")
    print("| method | AP | best pair F1 | R@P0.9 | best group F1 (eps) | seconds |" + (" recall by transform |" if kinds else "")
          + "\n|---|---|---|---|---|---|" + ("---|" if kinds else ""))
    for name in args.configs:
        model, size, pooling, whiten, hash_name, weight, normalize_k, metric = CONFIGS[name]
        emb, seconds = embed_cached(manifest, cache, model, size, pooling)
        start = time.perf_counter()
        hashes = None
        if hash_name:
            h, hash_seconds = embed_cached(manifest, cache, hash_name, 0, "")
            hashes, seconds = h.rows_for(emb.ids), seconds + hash_seconds
        vectors = descriptors(emb.vectors, whiten=whiten, hashes=hashes, hash_weight=weight)
        eps = (EPS_WHITENED if whiten else EPS) if metric == "cosine" else np.round(EPS * 40, 2)
        stats = {}
        groups, pairs, _ = cluster_vectors(vectors, emb.ids, [""] * len(emb.ids), eps_values=eps, metric=metric,
                                       normalize_k=normalize_k, candidates=10,
                                       search=args.search if metric == "cosine" else "exact", nprobe=args.nprobe,
                                       block=1024, stats=stats)
        seconds += time.perf_counter() - start
        scores = curve(pairs[pairs["nearest"] == 1], true, judged, kinds)  # each image's 10 nearest, as evaluate
        group_f1, group_eps = best_group_f1(groups, true, judged)
        print(f"| {name} | {scores['ap']:.3f} | {scores['pair_f1']:.3f} | {scores['r@p90']:.3f} | "
              f"{group_f1:.3f} ({group_eps:g}) | {seconds:.0f} |" + (f" {scores['kinds']} |" if kinds else "")
              + (f" search recall {stats['search_recall']:.3f} (at eps {group_eps:g}: "
                 f"{stats['search_recall_by_eps'].get(f'{group_eps:g}')})" if "search_recall" in stats else ""),
              flush=True)


if __name__ == "__main__":
    main()
