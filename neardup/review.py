"""Review the proposed pairs in the terminal: ``neardup review`` (or ``python -m neardup.review``).

Walks the pending pairs of the review queue, closest first, and records a verdict per pair in the
reviewed-pairs file (see :mod:`neardup.evaluate.queue`), saving after each answer.
``neardup review --import FILE`` merges verdicts exported from the HTML report's review
view (:func:`import_reviews`) instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import pandas as pd

from neardup.contract import QUEUE, UserError, read_queue, read_table
from neardup.evaluate.queue import (REVIEW_COLUMNS, build_queue, load_reviews, pair_key,
                                    reviewed_precision, save_reviews)
from neardup.layout import Layout
from neardup.render.pairs import figure_name, pair_figure

log = logging.getLogger(__name__)

PROMPT = "[d]uplicate / [n]ot a duplicate / [u]nsure / [q]uit: "
ANSWERS = {"d": "duplicate", "duplicate": "duplicate", "n": "different", "not": "different",
           "different": "different", "u": "unsure", "unsure": "unsure"}


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
        say(f"[{i}/{len(todo)}] {row['variant']}: {row['a']}  <->  {row['b']}  d={float(row['distance']):.4f}")
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


def import_reviews(src, dest) -> dict:
    """Merge the verdicts of ``src`` (a reviewed-pairs CSV, e.g. exported from the HTML report's review
    view) into ``dest`` (the reviewed-pairs file, created if missing); a verdict of ``src`` wins over
    ``dest``'s for the same :func:`pair_key`. ``dest`` is saved atomically (:func:`save_reviews`), and only
    when something changes.

    Raises ``ValueError`` naming the file (and row) for a missing ``src``, a missing column or a bad
    verdict (:func:`load_reviews`); ``dest`` is then left alone.

    Returns ``{"imported", "added", "changed", "unchanged", "total"}``: verdicts in ``src`` (one per key),
    keys new to ``dest``, keys whose verdict changed, keys already there with the same verdict, and the
    verdicts in ``dest`` now.
    """
    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise ValueError(f"{src}: no such file")
    try:
        new = load_reviews(src)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{src}: not a reviewed-pairs CSV ({exc}); expected columns {REVIEW_COLUMNS}") from None
    old = load_reviews(dest)
    before = {(a, b): v for a, b, v in zip(old["sha_a"], old["sha_b"], old["verdict"])}
    counts = {"imported": len(new), "added": 0, "changed": 0, "unchanged": 0}
    for sha_a, sha_b, verdict in zip(new["sha_a"], new["sha_b"], new["verdict"]):
        was = before.get((sha_a, sha_b))
        counts["added" if was is None else "unchanged" if was == verdict else "changed"] += 1
    if counts["added"] or counts["changed"]:
        save_reviews(pd.concat([old, new], ignore_index=True), dest)  # the last row of a key wins: the imported one
    counts["total"] = len(old) + counts["added"]
    return counts


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


def _defaults(root: Path, variant: str | None) -> dict:
    """Paths of the project (or ``find`` output) at ``root`` (:class:`neardup.layout.Layout`) for
    ``variant`` (default: the primary variant, from its ``params.yaml``)."""
    from neardup.contract import primary_variant
    from neardup.params import load_params

    layout = Layout.find(root)
    if variant is None:
        embed = load_params("embed", root / "params.yaml")
        variant = primary_variant(embed.models, embed.sizes)
    return {"queue": str(layout.evaluation(variant) / QUEUE), "manifest": str(layout.manifest()),
            "reviews": str(layout.path("reviews")), "figures": str(layout.path("review_figures")),
            "metrics": layout.metrics(variant)}


def _rerun(root: Path) -> str:
    """The command that counts new verdicts at ``root``: ``dvc repro`` in a project, else ``find`` again."""
    from neardup.api import RERUN

    return "dvc repro" if Layout.find(root).is_project else RERUN.format(out=root)


def _import(parser, args) -> int:
    """``--import FILE``: merge, print the counts; a bad file is a one-line error and exit code 2."""
    if not args.reviews:
        try:
            args.reviews = _defaults(Path.cwd(), args.variant)["reviews"]
        except (OSError, KeyError, UserError) as exc:
            parser.exit(2, f"{parser.prog}: error: run from a project's root or a `neardup find` output folder, or "
                           f"give --reviews ({exc})\n")
    try:
        counts = import_reviews(args.import_file, args.reviews)
    except (ValueError, OSError) as exc:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(exc).split())}\n")
    print(f"imported {counts['imported']} verdict(s) from {args.import_file} into {args.reviews}: "
          f"{counts['added']} added, {counts['changed']} changed, {counts['unchanged']} unchanged; "
          f"{counts['total']} in all. Run `{_rerun(Path.cwd())}` to count them.")
    return 0


def main(argv=None, *, prog: str = "python -m neardup.review") -> int:
    """CLI: ``neardup review [--variant V] [--open]`` or ``neardup review --import FILE``, run from a
    project's root or a ``neardup find`` output folder (or give the paths)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--variant", help="the variant whose pairs to review (default: the primary variant, the first "
                                      "model at the first size)")
    layout = Layout.at(".")  # the defaults as a project (or a find output folder) has them
    for name, text in (("queue", f"review queue CSV (default: {layout.evaluation('<variant>') / QUEUE})"),
                       ("manifest", "dataset manifest CSV"), ("reviews", "reviewed-pairs CSV, created if missing"),
                       ("figures", "folder of pair figures (the queue's figure paths are relative to it)")):
        parser.add_argument(f"--{name}", help=text)
    parser.add_argument("--open", action="store_true", help="show figures in a window when there is a display")
    parser.add_argument("--import", dest="import_file", metavar="FILE",
                        help="merge verdicts exported from the HTML report's review view into --reviews "
                             f"(default {layout.path('reviews')}) instead of reviewing; an imported verdict wins")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.import_file:
        return _import(parser, args)
    try:
        defaults = _defaults(Path.cwd(), args.variant)
    except (OSError, KeyError, UserError) as exc:
        defaults = {}
        if not (args.queue and args.manifest and args.reviews and args.figures):
            parser.error(f"run from a project's root or a `neardup find` output folder, or give every path ({exc})")
    for key in ("queue", "manifest", "reviews", "figures"):
        setattr(args, key, getattr(args, key) or defaults[key])
    if not Path(args.queue).is_file():
        parser.error(f"{args.queue}: no review queue; run `{_rerun(Path.cwd())}` first")
    queue = read_queue(args.queue)
    metrics = defaults.get("metrics")
    left_out = json.loads(metrics.read_text()).get("n_queue_left_out", 0) if metrics and metrics.is_file() else 0
    if left_out:
        print(f"the queue holds the {len(queue)} closest pairs; {left_out} more pairs inside the groups were left "
              "out (raise evaluate.max_queue, or choose a smaller eps, to see them)")
    manifest = read_table(args.manifest)
    show = _window_show() if args.open else None
    if args.open and show is None:
        print("no display: printing figure paths instead")
    reviews = review(queue, manifest, Path(args.reviews), figures_dir=Path(args.figures), show=show)
    final = build_queue(queue, reviews)
    for variant, rows in final.groupby("variant", sort=True):
        s = reviewed_precision(rows)
        print(f"{variant}: {s['n_pairs']} pairs, {s['n_duplicate']} duplicate, {s['n_different']} different, "
              f"{s['n_unsure']} unsure, {s['n_pending']} pending; precision {s['reviewed_precision']:.3f} "
              f"reviewed, [{s['precision_lower']:.3f}, {s['precision_upper']:.3f}] bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
