"""Reviewed pairs: precision on any dataset, from human verdicts on the proposed duplicate pairs.

Every pair inside a duplicate group gets a row in a review queue (and a figure); ``review`` walks the
pending pairs and records a verdict per pair in ``data/reviewed_pairs.csv``, keyed by the two images'
sha256, so a verdict holds across models, sizes, eps, renamed files and re-runs.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from neardup.tables import read_queue
from neardup.render import thumbnail

log = logging.getLogger(__name__)

VERDICTS = ("duplicate", "different", "unsure")
REVIEW_COLUMNS = ["sha_a", "sha_b", "verdict", "id_a", "id_b"]
QUEUE_COLUMNS = ["run", "a", "b", "sha_a", "sha_b", "distance", "verdict", "figure"]
PROMPT = "[d]uplicate / [n]ot a duplicate / [u]nsure / [q]uit: "
ANSWERS = {"d": "duplicate", "duplicate": "duplicate", "n": "different", "not": "different",
           "different": "different", "u": "unsure", "unsure": "unsure"}


def pair_key(sha1: str, sha2: str) -> tuple[str, str]:
    """The order-free key of a pair of images: their two content hashes, sorted."""
    return (sha1, sha2) if sha1 <= sha2 else (sha2, sha1)


def _normalise_reviews(reviews: pd.DataFrame, source: str) -> pd.DataFrame:
    missing = [c for c in REVIEW_COLUMNS if c not in reviews.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected columns {REVIEW_COLUMNS}")
    out = reviews[REVIEW_COLUMNS].astype(str).reset_index(drop=True)
    for i, row in out.iterrows():
        where = f"{source}: row {i + 1} (CSV line {i + 2}: {row['sha_a'][:12]}.. {row['sha_b'][:12]}..)"
        if row["verdict"] not in VERDICTS:
            raise ValueError(f"{where} has verdict {row['verdict']!r}; expected one of {list(VERDICTS)}")
        if not row["sha_a"] or not row["sha_b"]:
            raise ValueError(f"{where} has an empty sha_a or sha_b")
    swap = out["sha_a"] > out["sha_b"]
    out.loc[swap, ["sha_a", "sha_b", "id_a", "id_b"]] = out.loc[swap, ["sha_b", "sha_a", "id_b", "id_a"]].to_numpy()
    out = out.drop_duplicates(["sha_a", "sha_b"], keep="last")  # the last verdict on a pair wins
    return out.sort_values(["sha_a", "sha_b"], kind="stable", ignore_index=True)


def load_reviews(path) -> pd.DataFrame:
    """Read the reviewed-pairs CSV (columns ``REVIEW_COLUMNS``, all str).

    Returns an empty frame when ``path`` does not exist. Raises ``ValueError`` naming the file and the
    row for a missing column, an empty hash or a verdict outside ``VERDICTS``. Rows whose hashes are
    not in order are swapped into ``sha_a < sha_b``; for a repeated key the last row wins; rows come
    sorted by ``(sha_a, sha_b)``.
    """
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=str) for c in REVIEW_COLUMNS})
    return _normalise_reviews(pd.read_csv(path, dtype=str, keep_default_na=False), str(path))


def save_reviews(reviews: pd.DataFrame, path) -> None:
    """Write ``reviews`` atomically (temporary file + ``os.replace``): one row per key, the last verdict
    winning, sorted by ``(sha_a, sha_b)``. Validates as :func:`load_reviews` does."""
    path = Path(path)
    out = _normalise_reviews(reviews, f"reviews for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            out.to_csv(f, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def group_pairs_table(groups: pd.DataFrame, manifest: pd.DataFrame, *, run: str, distance=None) -> pd.DataFrame:
    """Every unordered pair inside each group, as queue rows without verdict and figure.

    Parameters
    ----------
    groups : DataFrame
        One grouping (columns ``group, id``; an ``eps`` column, if any, must hold one value).
    manifest : DataFrame
        The dataset manifest (``id, sha256``); every grouped id must be in it.
    run : str
        Value of the ``run`` column (e.g. ``efficientnet-lite0_224``).
    distance : callable, optional
        ``distance(a_ids, b_ids) -> array`` of pair distances; NaN when not given.

    Returns
    -------
    DataFrame with columns ``run, a, b, sha_a, sha_b, distance``; ``a < b``, ``sha_a`` is a's hash.
    """
    if "eps" in groups.columns and groups["eps"].nunique() > 1:
        raise ValueError(f"groups hold several eps {sorted(groups['eps'].unique())}; select one first")
    sha = manifest.set_index("id")["sha256"]
    unknown = sorted(set(groups["id"]) - set(sha.index))
    if unknown:
        raise ValueError(f"{len(unknown)} grouped id(s) not in the manifest, e.g. {unknown[:5]}")
    pairs = [p for _, ids in groups.groupby("group")["id"] for p in itertools.combinations(sorted(set(ids)), 2)]
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    dist = np.full(len(pairs), np.nan)
    if distance is not None and pairs:
        dist = np.asarray(distance(a, b), dtype=float).reshape(-1)
        if len(dist) != len(pairs):
            raise ValueError(f"distance returned {len(dist)} values for {len(pairs)} pairs")
    out = pd.DataFrame({"run": run, "a": a, "b": b, "sha_a": sha.reindex(a).to_numpy(dtype=object),
                        "sha_b": sha.reindex(b).to_numpy(dtype=object), "distance": dist}, columns=QUEUE_COLUMNS[:6])
    log.info("%s: %d pairs in %d groups", run, len(out), groups["group"].nunique())
    return out


def build_queue(pairs: pd.DataFrame, reviews: pd.DataFrame) -> pd.DataFrame:
    """Queue rows (``QUEUE_COLUMNS``) for ``pairs``: the verdict from ``reviews`` by :func:`pair_key`,
    ``'duplicate'`` for byte-identical pairs, ``''`` when pending; sorted by ``(distance, a, b)``, NaN
    distances last. ``figure`` is kept when ``pairs`` has one, else ``''`` (:func:`draw_pair_figures`)."""
    known = {pair_key(r.sha_a, r.sha_b): r.verdict for r in reviews.itertuples()}
    queue = pairs.copy()
    queue["verdict"] = [known.get(pair_key(x, y), "") for x, y in zip(queue["sha_a"], queue["sha_b"])]
    queue.loc[queue["sha_a"] == queue["sha_b"], "verdict"] = "duplicate"
    queue["figure"] = queue["figure"].fillna("").astype(str) if "figure" in queue.columns else ""
    queue["distance"] = pd.to_numeric(queue["distance"], errors="coerce")
    queue = queue.sort_values(["distance", "a", "b"], na_position="last", kind="stable")
    return queue[QUEUE_COLUMNS].reset_index(drop=True)


def figure_name(row) -> str:
    """Figure path of a queue row relative to the figures folder: ``<run>/pair_<hash of a, b>.png``."""
    digest = hashlib.sha1(f"{row['a']}\0{row['b']}".encode()).hexdigest()[:16]
    return f"{str(row['run']).replace('/', '_') or 'run'}/pair_{digest}.png"


def pair_figure(row, manifest: pd.DataFrame, out: Path, *, thumb_size: int = 256) -> Path:
    """Save a PNG of one pair: both images side by side with id, label, set; distance and verdict on top."""
    from matplotlib.figure import Figure  # no pyplot: leaves the interactive backend alone

    info = manifest.set_index("id")
    fig = Figure(figsize=(6.4, 3.9), layout="tight")
    for ax, image_id in zip(fig.subplots(1, 2), (row["a"], row["b"])):
        m = info.loc[image_id]
        label = m["label"] if m["label_name"] in ("", m["label"]) else f"{m['label']} ({m['label_name']})"
        ax.imshow(thumbnail(m["path"], thumb_size))
        ax.set_title(f"{image_id}\nlabel: {label or '-'}   set: {m['set'] or '-'}\n{m['width']}x{m['height']}",
                     fontsize=7)
        ax.axis("off")
    same = "  byte-identical" if row["sha_a"] == row["sha_b"] else ""
    verdict = f"  verdict: {row['verdict']}" if row.get("verdict") else ""
    distance = float(row["distance"])
    told = f"distance {distance:.4f}" if distance == distance else "joined through other group members"
    fig.suptitle(f"{row['run']}  {told}{same}{verdict}", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, metadata={"Software": None})
    return out


def draw_pair_figures(queue: pd.DataFrame, manifest: pd.DataFrame, out_dir: Path, *, max_figures: int = 200,
                      thumb_size: int = 256) -> pd.DataFrame:
    """Draw up to ``max_figures`` pair figures: pending pairs first, each part closest first.

    Returns a copy of ``queue`` whose ``figure`` column holds the PNG path relative to ``out_dir``
    (``<run>/pair_<hash>.png``) for drawn pairs and ``''`` for the others.
    """
    out_dir = Path(out_dir)
    queue = queue.reset_index(drop=True)
    queue["figure"] = ""
    done = queue["verdict"].fillna("").astype(str) != "" if "verdict" in queue.columns else False
    order = queue.assign(_done=done).sort_values(["_done", "distance", "a", "b"], na_position="last", kind="stable")
    order = order.index[:max(0, max_figures)]
    for idx in order:
        name = figure_name(queue.loc[idx])
        pair_figure(queue.loc[idx], manifest, out_dir / name, thumb_size=thumb_size)
        queue.loc[idx, "figure"] = name
    log.info("%d pair figures in %s", len(order), out_dir)
    return queue


def reviewed_precision(queue: pd.DataFrame) -> dict:
    """Counts and precision of the queue's rows (pass one run's rows for that run's precision).

    ``reviewed_precision`` = duplicate / (duplicate + different), NaN when neither; ``precision_lower``
    counts pending and unsure pairs as wrong, ``precision_upper`` as right; both 1.0 with no pairs.
    """
    verdicts = queue["verdict"].fillna("").astype(str)
    bad = sorted(set(verdicts) - set(VERDICTS) - {""})
    if bad:
        raise ValueError(f"unknown verdict(s) {bad} in the queue; expected one of {list(VERDICTS)} or ''")
    n = len(verdicts)
    dup, diff = int((verdicts == "duplicate").sum()), int((verdicts == "different").sum())
    return {"n_pairs": n, "n_duplicate": dup, "n_different": diff, "n_unsure": int((verdicts == "unsure").sum()),
            "n_pending": int((verdicts == "").sum()),
            "reviewed_precision": dup / (dup + diff) if dup + diff else float("nan"),
            "precision_lower": dup / n if n else 1.0, "precision_upper": (n - diff) / n if n else 1.0}


def review(queue: pd.DataFrame, manifest: pd.DataFrame, reviews_path: Path, *, figures_dir: Path, ask=input,
           say=print, show=None) -> pd.DataFrame:
    """Ask for a verdict on every pending pair of ``queue``, closest first, saving after each answer.

    Pairs are unique by :func:`pair_key`; keys already in ``reviews_path`` and byte-identical pairs are
    skipped, so a new session resumes where the last one stopped. A missing figure is drawn into
    ``figures_dir``; ``show(path)`` displays it, or ``say`` prints its path. ``q``, EOF or Ctrl-C stop;
    any other unknown answer is asked again. Returns the reviews as saved.
    """
    reviews_path, figures_dir = Path(reviews_path), Path(figures_dir)
    reviews = load_reviews(reviews_path)
    done = set(zip(reviews["sha_a"], reviews["sha_b"]))
    order = queue.assign(distance=pd.to_numeric(queue["distance"], errors="coerce"))
    todo, seen = [], set()
    for _, row in order.sort_values(["distance", "a", "b"], na_position="last", kind="stable").iterrows():
        key = pair_key(row["sha_a"], row["sha_b"])
        if row["sha_a"] != row["sha_b"] and key not in done and key not in seen:
            seen.add(key)
            todo.append(row)
    say(f"{len(todo)} pair(s) to review ({len(done)} already reviewed in {reviews_path})")
    for i, row in enumerate(todo, 1):
        name = str(row.get("figure") or "") or figure_name(row)
        figure = figures_dir / name
        if not figure.is_file():
            pair_figure(row, manifest, figure)
        say(f"[{i}/{len(todo)}] {row['run']}: {row['a']}  <->  {row['b']}  d={float(row['distance']):.4f}")
        if show is not None:
            show(figure)
        else:
            say(f"  figure: {figure}")
        while True:
            try:
                answer = ask(PROMPT).strip().lower()
            except (EOFError, KeyboardInterrupt):
                answer = "q"
            if answer in ("q", "quit"):
                say("stopped; the verdicts so far are saved")
                return reviews
            if answer in ANSWERS:
                break
            say(f"  unknown answer {answer!r}; type d, n, u or q")
        key = pair_key(row["sha_a"], row["sha_b"])
        ids = (row["a"], row["b"]) if key[0] == row["sha_a"] else (row["b"], row["a"])
        new = pd.DataFrame([[key[0], key[1], ANSWERS[answer], *ids]], columns=REVIEW_COLUMNS)
        reviews = pd.concat([reviews, new], ignore_index=True)
        save_reviews(reviews, reviews_path)
        reviews = load_reviews(reviews_path)
    say("no pending pairs left")
    return reviews


def _window_show():
    """A ``show(path)`` that opens the figure in a matplotlib window, or None without a display."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return None
    import matplotlib.pyplot as plt
    from matplotlib import rcsetup

    if plt.get_backend().lower() in {b.lower() for b in rcsetup.non_interactive_bk}:
        return None  # no GUI toolkit: matplotlib fell back to a file backend

    def show(path):
        fig = plt.figure("neardup review", figsize=(8, 5), clear=True)
        fig.add_subplot().imshow(plt.imread(str(path)))
        fig.axes[0].axis("off")
        plt.show(block=False)
        plt.pause(0.05)
    return show


def main(argv=None) -> int:
    """CLI: ``python -m neardup.review --queue Q --manifest M --reviews R --figures DIR [--open]``."""
    parser = argparse.ArgumentParser(prog="python -m neardup.review", description=__doc__.splitlines()[0])
    for name, text in (("queue", "review queue CSV"), ("manifest", "dataset manifest CSV"),
                       ("reviews", "reviewed-pairs CSV, created if missing"),
                       ("figures", "folder of pair figures (the queue's figure paths are relative to it)")):
        parser.add_argument(f"--{name}", required=True, help=text)
    parser.add_argument("--open", action="store_true", help="show figures in a window when there is a display")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    queue = read_queue(args.queue)
    queue["distance"] = pd.to_numeric(queue["distance"].replace("", "nan"))
    manifest = pd.read_csv(args.manifest, dtype=str, keep_default_na=False)
    show = _window_show() if args.open else None
    if args.open and show is None:
        print("no display: printing figure paths instead")
    reviews = review(queue, manifest, Path(args.reviews), figures_dir=Path(args.figures), show=show)
    final = build_queue(queue, reviews)
    for run, rows in final.groupby("run", sort=True):
        s = reviewed_precision(rows)
        print(f"{run}: {s['n_pairs']} pairs, {s['n_duplicate']} duplicate, {s['n_different']} different, "
              f"{s['n_unsure']} unsure, {s['n_pending']} pending; precision {s['reviewed_precision']:.3f} "
              f"reviewed, [{s['precision_lower']:.3f}, {s['precision_upper']:.3f}] bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
