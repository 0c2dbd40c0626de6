"""Detection quality on a folder, as a user runs it: ``find_duplicates`` with the defaults (planted
copies included), the eps chosen without ground truth; the truth is used only to count afterwards.

Prints the chosen eps, the planted recall there and the transforms under 0.98, the pairs grouped at
that eps that the truth lists and those it does not (pairs of different originals), and the
``verify`` block of the run's ``stats.json`` (docs/quality.md)::

    .venv/bin/python benchmarks/folder_quality.py ../shared/data/wallpapers \\
        --truth ../shared/data/wallpapers/truth_pairs.csv      # a, b (ids relative to the folder)
    .venv/bin/python benchmarks/folder_quality.py data/dataset/images --truth data/dataset/truth.csv
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neardup.api import find_duplicates  # noqa: E402
from neardup.contract import PLANTED, STATS, read_outcomes  # noqa: E402
from neardup.layout import Layout  # noqa: E402


def truth_pairs(path: Path | None) -> set:
    """Unordered true pairs from ``a, b`` rows or from the demo's ``id, original`` rows."""
    if path is None:
        return set()
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    a, b = ("a", "b") if "a" in table.columns else ("id", "original")
    return {frozenset(p) for p in zip(table[a], table[b])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--cache", default="", help="cache.dir (default: none, every feature computed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = find_duplicates(args.folder, out=Path(tmp) / "out", cache={"dir": args.cache})
        seconds = time.perf_counter() - start
        clusters = Layout.at(result.out).clusters(result.variant)
        outcomes = read_outcomes(clusters / PLANTED)
        stats = json.loads((clusters / STATS).read_text())
    at = outcomes[outcomes["eps"] == result.eps]
    by_transform = at.groupby("transform")["found"].mean()
    truth = truth_pairs(args.truth)
    family = {}  # each image's family: the connected part of the truth pairs
    for pair in truth:
        merged = set(pair).union(*(family.get(i, set()) for i in pair))
        for i in merged:
            family[i] = merged
    grouped = {frozenset(p) for members in result.groups.groupby("group")["id"].apply(sorted)
               for p in itertools.combinations(members, 2)}
    true_found = len(grouped & truth)
    others = sum(1 for a, b in map(tuple, grouped) if b not in family.get(a, ()))
    print(f"{args.folder}: {len(result.manifest)} images, {seconds:.0f} s")
    print(f"chosen eps {result.eps}; planted recall {at['found'].mean():.3f}; transforms under 0.98: "
          + (", ".join(f"{t} {v:.2f}" for t, v in by_transform.items() if v < 0.98) or "none"))
    print(f"groups {result.groups['group'].nunique()}, grouped pairs {len(grouped)}"
          + (f": true pairs found {true_found} of {len(truth)}, pairs of different originals {others}"
             if truth else ""))
    print("verify: " + json.dumps(stats.get("verify", {})))


if __name__ == "__main__":
    main()
