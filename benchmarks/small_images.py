"""Small images (under ``cluster.verify.min_side``, e.g. CIFAR's 32 x 32): what the default finds, at
the level of pairs and of images, and what a dense alignment would add.

Runs ``find_duplicates`` on the folder as a user would (the eps chosen without the truth), then
scores against the truth:

- **pair level**: AP over the candidate pairs a judged image is in (``--judged-prefix``: ciFAIR
  never judged train-train pairs), precision / recall / F1 of the pairs grouped at the chosen eps;
- **image level** (ciFAIR's truth is complete there: every test image was judged): does a test image
  have a duplicate in train? AP of each test image's smallest distance to a train image, and
  precision / recall of "grouped with a train image" at the chosen eps;
- **a dense alignment**: the best normalised correlation of the two grey images over shifts of up to
  3 px, scales 0.9 / 1 / 1.1 and the mirror (OpenCV ``matchTemplate``), its cost per pair, and the
  image-level AP and recall at precision 0.98 of the CNN distance alone and mixed with it
  (``-distance + w * dense``, at the best threshold: an upper bound, the truth picks it).

    .venv/bin/python benchmarks/small_images.py ../shared/data/cifar10-dev
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neardup.api import find_duplicates  # noqa: E402
from neardup.contract import PAIRS, PLANTED, read_outcomes  # noqa: E402
from neardup.layout import Layout  # noqa: E402

SHIFT, SCALES = 3, (0.9, 1.0, 1.1)


def dense_score(a: np.ndarray, b: np.ndarray) -> float:
    """Best normalised correlation of grey images ``a`` and ``b`` (same size) over shifts of up to
    :data:`SHIFT` px, :data:`SCALES` and the mirror, either image as the template."""
    import cv2

    best = -1.0
    side = min(a.shape)
    for src, dst in ((a, b), (b, a)):
        for mirrored in (False, True):
            image = np.ascontiguousarray(src[:, ::-1] if mirrored else src)
            for scale in SCALES:
                n = round(side * scale)
                resized = cv2.resize(image, (n, n), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
                half, centre = side // 2 - SHIFT, n // 2
                template = np.ascontiguousarray(resized[centre - half:centre + half, centre - half:centre + half])
                best = max(best, float(cv2.matchTemplate(dst, template, cv2.TM_CCOEFF_NORMED).max()))
    return best


def recall_at_precision(scores: np.ndarray, truth: np.ndarray, precision: float) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(truth[order])
    ok = hits / np.arange(1, len(order) + 1) >= precision
    return float(hits[ok].max() / truth.sum()) if ok.any() else 0.0


def main() -> None:
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="holds images/, labels.csv (image_id,label,split), truth_pairs.csv")
    parser.add_argument("--judged-prefix", default="test/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    images, truth = args.folder / "images", pd.read_csv(args.folder / "truth_pairs.csv")
    labels = pd.read_csv(args.folder / "labels.csv")
    true_pairs = {frozenset(p) for p in zip(truth["a"], truth["b"])}
    tests = set(labels.loc[labels["split"] == "test", "image_id"])
    cross = truth[truth["kind"] == "test-train"]
    positive = (set(cross["a"]) | set(cross["b"])) & tests
    with tempfile.TemporaryDirectory() as tmp:
        result = find_duplicates(images, args.folder / "labels.csv", out=Path(tmp) / "out")
        pairs = pd.read_csv(Layout.at(result.out).clusters(result.variant) / PAIRS)
        planted = read_outcomes(Layout.at(result.out).clusters(result.variant) / PLANTED)
    eps = result.eps
    pairs["true"] = [frozenset(p) in true_pairs for p in zip(pairs["a"], pairs["b"])]
    judged = pairs[pairs["a"].str.startswith(args.judged_prefix) | pairs["b"].str.startswith(args.judged_prefix)]
    grouped = judged[judged["distance"] <= eps]
    found = int(grouped["true"].sum())
    p_pair = found / max(len(grouped), 1)
    r_pair = found / len(true_pairs)
    at = planted[planted["eps"] == eps]
    weak = at.groupby("transform")["found"].mean()
    print(f"chosen eps {eps}; planted recall {at['found'].mean():.3f}; transforms under 0.98: "
          + (", ".join(f"{t} {r:.2f}" for t, r in weak[weak < 0.98].items()) or "none"))
    print(f"pair level: AP {average_precision_score(judged['true'], -judged['distance']):.3f} "
          f"({int(judged['true'].sum())} of {len(true_pairs)} true pairs among the candidates); at the chosen eps "
          f"P {p_pair:.3f} R {r_pair:.3f} F1 {2 * p_pair * r_pair / max(p_pair + r_pair, 1e-9):.3f}")
    # image level: each test image's smallest distance to a train image
    cross_pairs = pairs[pairs["a"].isin(tests) ^ pairs["b"].isin(tests)].copy()
    cross_pairs["test"] = np.where(cross_pairs["a"].isin(tests), cross_pairs["a"], cross_pairs["b"])
    order = sorted(tests)
    y = np.array([t in positive for t in order])
    nearest = cross_pairs.groupby("test")["distance"].min()
    distance = np.array([nearest.get(t, 9.0) for t in order])
    flagged = distance <= eps
    p_img = y[flagged].mean() if flagged.any() else 0.0
    print(f"image level ({len(tests)} test images, {y.sum()} with a duplicate in train): AP "
          f"{average_precision_score(y, -distance):.3f}; at the chosen eps P {p_img:.3f} R {y[flagged].sum() / y.sum():.3f}")
    grey = {}

    def load(image_id):
        if image_id not in grey:
            grey[image_id] = np.asarray(Image.open(images / image_id).convert("L"), np.float32)
        return grey[image_id]

    start = time.perf_counter()
    cross_pairs["dense"] = [dense_score(load(a), load(b)) for a, b in zip(cross_pairs["a"], cross_pairs["b"])]
    ms = 1000 * (time.perf_counter() - start) / max(len(cross_pairs), 1)
    print(f"dense alignment: {ms:.2f} ms a pair ({len(cross_pairs)} test-train candidate pairs, images decoded once)")
    for name, w in (("CNN distance", 0.0), ("+ 0.25 dense", 0.25), ("+ 0.5 dense", 0.5), ("dense alone", None)):
        score = cross_pairs["dense"] if w is None else -cross_pairs["distance"] + w * cross_pairs["dense"]
        best = cross_pairs.assign(score=score).groupby("test")["score"].max()
        s = np.array([best.get(t, -9.0) for t in order])
        print(f"  {name}: image AP {average_precision_score(y, s):.3f}, recall at precision 0.98 "
              f"{recall_at_precision(s, y, 0.98):.3f} (the truth picks the threshold)")


if __name__ == "__main__":
    main()
