"""Detection quality of each precision candidate against fp32, for :mod:`benchmarks.precision`.

Each candidate embeds the same pixels; the vectors then go through the product's default scoring
(whitening 1.0, dHash mix 0.2, neighbour normalisation k=10, :func:`neardup.cluster.scoring.descriptors`)
and the exact pair search (:func:`neardup.cluster.cluster_vectors`), and are scored as
:mod:`benchmarks.int8_quality` does (:func:`real_duplicates.curve`): pair AP, best pair F1, recall at
precision 0.9, and the recall of each planted transform at the best-F1 threshold.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from precision_models import cosines  # noqa: E402
from real_duplicates import closed_pairs, curve, read_truth, with_plants  # noqa: E402

from neardup.cluster import cluster_vectors  # noqa: E402
from neardup.cluster.scoring import descriptors  # noqa: E402
from neardup.embed.models import get_spec  # noqa: E402
from neardup.embed.pixels import load_pixels  # noqa: E402
from neardup.fetch.folder import scan_folder  # noqa: E402
from neardup.hash import hash_manifest  # noqa: E402
from neardup.transforms import EASY_TRANSFORMS, HARD_TRANSFORMS  # noqa: E402


def demo_set(root: Path):
    """The demo dataset with its planted copies: ``(manifest, true pairs, {pair: transform}, judged)``."""
    data = pd.read_csv(root / "data/dataset/manifest.csv", dtype={"id": str})
    plants = pd.read_csv(root / "data/plants/manifest.csv", dtype={"id": str})
    manifest = pd.concat([data, plants], ignore_index=True)
    manifest["path"] = [str(root / p) for p in manifest["path"]]
    links = []
    for truth in (root / "data/dataset/truth.csv", root / "data/plants/truth.csv"):
        table = pd.read_csv(truth, dtype=str, keep_default_na=False)
        links += list(zip(table["id"], table["original"]))
    planted = pd.read_csv(root / "data/plants/truth.csv", dtype=str)
    kinds = {tuple(sorted(p)): t for p, t in zip(zip(planted["id"], planted["original"]), planted["transform"])}
    return manifest, closed_pairs(links), kinds, (lambda i: True)


def cifar_set(folder: Path, out: Path, *, plant: int, seed: int):
    """cifar10-dev with ``plant`` copies planted (easy + hard transforms), judged on ``test/`` pairs."""
    return planted_set(folder / "images", folder / "truth_pairs.csv", out, plant=plant, seed=seed,
                       judged=lambda i: i.startswith("test/") or i.startswith("planted"))


def planted_set(images: Path, truth: Path, out: Path, *, plant: int, seed: int, judged=lambda i: True):
    """The images under ``images`` with ``plant`` copies planted (easy + hard transforms); the true pairs
    are the planted ones and those of ``truth`` (a judged-pairs CSV, when it exists)."""
    manifest = scan_folder(images, symlinks="inside").manifest
    true, links = read_truth(truth) if truth.is_file() else (set(), [])
    manifest, planted_true, kinds = with_plants(manifest, links, out, n=plant,
                                                transforms=EASY_TRANSFORMS + HARD_TRANSFORMS, seed=seed)
    true = {p for p in true | planted_true if set(p) <= set(manifest["id"])}
    return manifest, true, kinds, judged


def dataset_pixels(manifest: pd.DataFrame, model: str) -> tuple[np.ndarray, int]:
    """Every image of ``manifest`` as ``model`` sees it at ``size: auto``, and that size."""
    spec = get_spec(model)
    size = spec.auto_size(manifest["width"].astype(int), manifest["height"].astype(int))
    crop = spec.crop_fraction(size)
    return np.stack([load_pixels(p, size=size, crop_fraction=crop) for p in manifest["path"]]), size


def score(vectors: np.ndarray, manifest: pd.DataFrame, hashes: np.ndarray, true: set, kinds: dict, judged) -> dict:
    """AP, best pair F1, R@P0.9 and per-transform recall of ``vectors`` under the default scoring."""
    ids = manifest["id"].to_numpy().astype(str)
    scored = descriptors(vectors, whiten=1.0, hashes=hashes, hash_weight=0.2)
    _, pairs, _ = cluster_vectors(scored, ids, [""] * len(ids), eps_values=np.array([0.5]), metric="cosine",
                                  normalize_k=10, candidates=10, search="exact", nprobe=16, block=1024, stats={})
    result = curve(pairs[pairs["nearest"] == 1], true, judged, kinds)
    result["recall"] = dict(item.rsplit(" ", 1) for item in _split_kinds(result.get("kinds", "")))
    return result


def _split_kinds(text: str) -> list[str]:
    """``'crop 0.90 rotate 1.00'`` -> ``['crop 0.90', 'rotate 1.00']``."""
    words = text.split()
    return [f"{words[i]} {words[i + 1]}" for i in range(0, len(words) - 1, 2)]


def quality_rows(name: str, manifest, true, kinds, judged, candidates, *, model: str, calibration: int,
                 seed: int, log=print) -> list[dict]:
    """One row per candidate on one dataset: AP, F1, R@P0.9, per-transform recall, cosine to fp32.

    ``candidates(model, size, calibration_pixels)`` returns ``{name: callable(pixels) -> vectors}``,
    fp32 first."""
    pixels, size = dataset_pixels(manifest, model)
    real = np.flatnonzero(~manifest["id"].astype(str).str.startswith("planted").to_numpy())
    sample = np.sort(np.random.default_rng(seed).choice(real, min(calibration, len(real)), replace=False))
    runners = candidates(model, size, pixels[sample])
    log(f"{name}: {len(manifest)} images ({len(kinds)} planted), {len(true)} true pairs, {model}@{size}, "
        f"calibrated on {len(sample)} of its own images (seed {seed})")
    return scored_rows(name, manifest, true, kinds, judged,
                       ((label, runner(pixels)) for label, runner in runners.items()), log=log)


def scored_rows(name: str, manifest, true, kinds, judged, vectors, *, column: str = "candidate",
                log=print) -> list[dict]:
    """One row per ``(label, vectors)`` of ``vectors`` on one dataset: AP, F1, R@P0.9, per-transform
    recall (:func:`score`) and the cosine of each image's vector to the first label's."""
    hashes = hash_manifest(manifest, method="dhash", hash_size=8).vectors
    rows, reference = [], None
    for label, vecs in vectors:
        reference = vecs if reference is None else reference
        cos = cosines(vecs, reference)
        s = score(vecs, manifest, hashes, true, kinds, judged)
        rows.append({"set": name, column: label, "ap": s["ap"], "f1": s["pair_f1"], "r@p90": s["r@p90"],
                     "cos_min": float(cos.min()), "cos_mean": float(cos.mean()), "recall": s["recall"]})
        log(f"  {label}: AP {s['ap']:.3f} F1 {s['pair_f1']:.3f} R@P0.9 {s['r@p90']:.3f} cosine "
            f"{cos.min():.4f}/{cos.mean():.4f} | {s.get('kinds', '')}")
    return rows


def both_sets(candidates, *, demo_root: Path, cifar: Path | None, model: str, calibration: int, seed: int,
              plant: int = 200, log=print) -> list[dict]:
    """:func:`quality_rows` on the demo (with its planted copies) and on cifar10-dev (with ``plant`` copies)."""
    rows = quality_rows("demo", *demo_set(demo_root), candidates, model=model, calibration=calibration,
                        seed=seed, log=log)
    if cifar is not None:
        with tempfile.TemporaryDirectory() as tmp:
            rows += quality_rows("cifar10-dev", *cifar_set(cifar, Path(tmp) / "plants", plant=plant, seed=seed),
                                 candidates, model=model, calibration=calibration, seed=seed, log=log)
    return rows


def print_quality(rows: list[dict], *, column: str = "candidate", reference: str = "fp32") -> None:
    """A markdown table of quality rows, each set's first row the ``reference`` the others are compared to."""
    print(f"\n| set | {column} | AP | dAP | best pair F1 | R@P0.9 | cosine to {reference} min / mean | planted "
          f"transforms worse than {reference} (recall at the best-F1 threshold) |\n|---|---|---|---|---|---|---|---|")
    base = {}
    for r in rows:
        ref = base.setdefault(r["set"], r)
        worse = [f"{k} {ref['recall'][k]}->{v}" for k, v in r["recall"].items() if float(v) < float(ref["recall"][k])]
        print(f"| {r['set']} | {r[column]} | {r['ap']:.3f} | {r['ap'] - ref['ap']:+.3f} | {r['f1']:.3f} | "
              f"{r['r@p90']:.3f} | {r['cos_min']:.4f} / {r['cos_mean']:.4f} | {', '.join(worse) or 'none'} |",
              flush=True)


def bench_arguments(parser, *, models: list[str], rounds: int) -> None:
    """The options :mod:`precision` and :mod:`input_pipeline` share: what to time, on which photos, and
    the quality sets."""
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--models", nargs="+", default=models, help="model@size, ...")
    parser.add_argument("--folder", type=Path, help="photos to time (default: generated 800x600 scenes)")
    parser.add_argument("--n-images", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--quality", action="store_true", help="also AP / F1 on the demo and cifar10-dev")
    parser.add_argument("--demo-root", type=Path, default=repo, help="a project whose data/ holds the demo")
    parser.add_argument("--cifar", type=Path, default=repo.parent / "shared" / "data" / "cifar10-dev")
