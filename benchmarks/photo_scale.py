"""The whole pipeline at the size users have: N distinct camera-sized photos, `dvc repro` as a user runs it.

For each N, a folder of N distinct 800 x 600 JPEGs (:mod:`scenes`: procedural scenes with camera-photo
texture, none a copy of another, so every group found is a pair of different originals) becomes a
project with ``neardup init``; ``dvc repro`` runs the default pipeline there (the default planted
copies measure recall). The script prints, per stage: wall seconds and the peak memory of the stage's
process (``logs/timings.jsonl``); then the content cache's bytes per image for each kind (keypoint
features, vectors, hashes, scans), the planted recall and the pairs of different originals at the eps
the pipeline chose without ground truth, and the ``verify`` block of the primary run's ``stats.json``.
The load on the machine is printed before and after::

    make bench-scale                                   # N = 2,000, 5,000 and 25,000
    .venv/bin/python benchmarks/photo_scale.py --sizes 500 --work /tmp/scale
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenes import make_scenes  # noqa: E402


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def folder_of(pool: list[Path], n: int, dest: Path) -> Path:
    """``dest`` holding the first ``n`` photos of ``pool`` (hard links where the file system allows)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for path in pool[:n]:
        try:
            os.link(path, dest / path.name)
        except OSError:
            shutil.copy2(path, dest / path.name)
    return dest


def cache_bytes(cache: Path, n_images: int) -> dict:
    """Bytes of each content cache folder: per file for the keypoint features (one folder per setting:
    the full features and the glance), per image for the rest (vector and hash chunks, scans, models)."""
    out = {}
    folders = sorted(p for p in cache.iterdir() if p.is_dir()) if cache.is_dir() else []
    for folder in folders:
        for part in (sorted(p for p in folder.iterdir() if p.is_dir()) if folder.name == "features" else [folder]):
            files = [p for p in part.rglob("*") if p.is_file()]
            total = sum(p.stat().st_size for p in files)
            name = part.relative_to(cache).as_posix()
            out[name] = {"files": len(files), "bytes_per_file": total / max(1, len(files)),
                         "bytes_per_image": total / max(1, n_images)}
    return out


def run_size(n: int, pool: list[Path], work: Path, env: dict) -> dict:
    root = work / f"n{n}"
    images = folder_of(pool, n, root / "images")
    project = root / "project"
    if project.exists():
        shutil.rmtree(project)
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "neardup"), "init", str(project), "--images", str(images)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    before = load()
    start = time.perf_counter()
    with (root / "repro.log").open("w") as log:
        code = subprocess.run([str(bin_dir / "dvc"), "repro"], cwd=project, env=env, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    if code:
        raise SystemExit(f"dvc repro failed on {n} photos (exit {code}): see {root / 'repro.log'}")
    timings = [json.loads(line) for line in (project / "logs" / "timings.jsonl").read_text().splitlines()]
    stages = pd.DataFrame([t for t in timings if t.get("step") == "stage"])
    stats = json.loads(next((project / "data" / "clusters").glob("efficientnet*/stats.json")).read_text())
    metrics_file = next(p for p in (project / "reports" / "metrics").glob("efficientnet*.json"))
    metrics = json.loads(metrics_file.read_text())
    text = (root / "repro.log").read_text(errors="replace")
    embedded = [(float(a), float(b)) for a, b in re.findall(r"embedded \d+ new images .*? in ([\d.]+) s, ([\d.]+) CPU s", text)]
    verified = [(float(a), float(b)) for a, b in re.findall(r"verification of \d+ pairs took ([\d.]+) s, ([\d.]+) CPU s", text)]
    return {"n": n, "wall": wall, "embed_s": [sum(x) for x in zip(*embedded)] or [0, 0],
            "verify_s": [sum(x) for x in zip(*verified)] or [0, 0], "load_before": before, "load_after": load(), "stages": stages,
            "cache": cache_bytes(project / ".neardup_cache", n), "verify": stats.get("verify", {}),
            "metrics": metrics}


def report(result: dict) -> None:
    n = result["n"]
    print(f"\n## {n:,} photos (800x600): dvc repro {result['wall']:.0f} s; {result['load_before']} before, "
          f"{result['load_after']} after\n")
    stages = result["stages"]
    print("| stage | variant | seconds | CPU seconds | peak MB |\n|---|---|---|---|---|")
    for row in stages.itertuples():
        print(f"| {row.stage} | {row.variant} | {row.seconds:.1f} | {row.cpu_seconds:.1f} | {row.peak_mb:.0f} |")
    print(f"| **all** | | **{stages['seconds'].sum():.1f}** | **{stages['cpu_seconds'].sum():.1f}** | "
          f"**{stages['peak_mb'].max():.0f}** |")
    print("\ncache: " + "; ".join(f"{kind}: {c['files']} files, {c['bytes_per_file'] / 1024:.1f} KB a file, "
                                  f"{c['bytes_per_image'] / 1024:.1f} KB an image" for kind, c in result["cache"].items()))
    m = result["metrics"]
    keys = ("eps", "planted_recall", "n_groups", "n_pairs", "n_images_grouped", "planted_with_unrelated")
    print("metrics at the chosen eps: " + ", ".join(f"{k} {m[k]}" for k in keys if k in m))
    print("pairs of different originals (every grouped pair: the photos are distinct): "
          f"{m.get('n_pairs', 'n/a')}")
    print("verify: " + json.dumps(result["verify"]))
    (ew, ec), (vw, vc) = result["embed_s"], result["verify_s"]
    print(f"embedding (real images and copies): {ew:.1f} s wall, {ec:.1f} CPU s; verification: {vw:.1f} s wall, "
          f"{vc:.1f} CPU s = {vc / max(ec, 1e-9):.2f}x the embedding's CPU time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 25000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/neardup-photo-scale"),
                        help="photos and projects go here (several GB at 25,000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pool = make_scenes(args.work / "scenes", max(args.sizes), seed=args.seed)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    for n in args.sizes:
        report(run_size(n, pool, args.work, env))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
