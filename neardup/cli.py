"""The ``neardup`` command (also ``python -m neardup``).

Subcommands mirror what users do:

- ``neardup find DIR``: one shot on any folder, no DVC needed (:func:`neardup.find_duplicates`);
- ``neardup review``: review the proposed pairs of a DVC project (run from its root);
- ``neardup report``: open, or rebuild, the project's HTML report;
- ``neardup init``: make a DVC project (``dvc.yaml``, ``params.yaml``) around a folder, with this
  package's pipeline, so a user's own repository gets it without cloning neardup's.

A user error ends with one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import webbrowser
from pathlib import Path

from neardup.contract import KEEP, REMOVE, UserError, os_error_message

log = logging.getLogger("neardup")


def _find(args) -> int:
    from neardup.api import find_duplicates

    overrides = {}
    if args.model or args.size:
        from neardup.params import default_params

        embed = default_params()["embed"]
        overrides["embed"] = {"models": [args.model] if args.model else embed["models"],
                              "sizes": [args.size if args.size == "auto" else int(args.size)] if args.size
                              else embed["sizes"]}
    if args.plant is not None:
        overrides["plant"] = {"n": args.plant}
    out = Path(args.out)
    result = find_duplicates(args.folder, labels=args.labels, out=out, **overrides)
    report = result.report(out / "index.html")
    n_groups = result.groups["group"].nunique() if len(result.groups) else 0
    metrics = result.metrics
    print(f"{len(result.manifest)} images ({len(result.skipped)} skipped: {out / 'dataset' / 'skipped.csv'}); "
          f"run {result.run}, eps {result.eps:g}: {result.reason.splitlines()[0]}")
    print(f"{n_groups} duplicate groups ({int(metrics.get('n_label_conflicts', 0))} with conflicting labels), "
          f"{len(result.remove)} images to remove; planted copies found: {metrics.get('planted_recall', float('nan')):.2f}")
    for name in (KEEP, REMOVE):
        print(f"  {out / name}")
    print(f"  {out / 'evaluation' / result.run / 'groups.csv'} (groups), "
          f"{out / 'evaluation' / result.run / 'queue.csv'} (pairs to review)")
    print(f"  {report} (report)")
    if args.open:
        webbrowser.open(report.resolve().as_uri())
    return 0


def _review(args, rest) -> int:
    from neardup import review

    argv = list(rest)
    if args.run:
        argv += ["--run", args.run]
    return int(review.main(argv) or 0)


def _report(args) -> int:
    page = Path("reports") / "index.html"
    if args.rebuild:
        if not Path("dvc.yaml").is_file():
            raise UserError("no dvc.yaml here: run `neardup report --rebuild` from a neardup DVC project's root")
        dvc = shutil.which("dvc")
        if dvc is None:
            raise UserError("dvc is not installed here: pip install dvc")
        code = subprocess.call([dvc, "repro", "render"])
        if code:
            return code
    if not page.is_file():
        raise UserError(f"{page} does not exist: run `dvc repro` (or `neardup report --rebuild`) first")
    print(page.resolve())
    if args.open:
        webbrowser.open(page.resolve().as_uri())
    return 0


def _init(args) -> int:
    from neardup.project import init_project

    dest = init_project(args.dir, images=args.images, labels=args.labels, force=args.force)
    print(f"neardup project in {dest}: dvc.yaml, params.yaml (fetch reads {args.images}); now run:\n"
          f"  cd {dest} && dvc repro")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="neardup", description="Find duplicate and near-duplicate images in ML "
                                  "datasets: which images, across which sets, with which labels, how sure.")
    top.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    find = sub.add_parser("find", help="find duplicates in a folder (no DVC needed)",
                          description="Find the duplicates of a folder of images with the pipeline's defaults and "
                                      "write the groups, keep/remove lists and the HTML report to --out.")
    find.add_argument("folder", help="folder of images (scanned recursively)")
    find.add_argument("--labels", help="Kaggle-style image_id,label CSV (ids relative to the folder or bare names)")
    find.add_argument("--model", help="embedding model, e.g. efficientnet-lite0 (default: params.yaml's first)")
    find.add_argument("--size", help="input side in px, or auto (default: params.yaml's first)")
    find.add_argument("--plant", type=int, help="planted copies that measure recall (default: params.yaml's plant.n)")
    find.add_argument("--out", default="neardup_out", help="output folder (default: %(default)s)")
    find.add_argument("--open", action="store_true", help="open the report in a browser")
    review = sub.add_parser("review", help="review the proposed pairs (run from the project's root)",
                            description="Review pending pairs in the terminal, or import verdicts exported from the "
                                        "HTML report's review view. Other options: python -m neardup.review --help.",
                            add_help=False)
    review.add_argument("--run", help="the run whose pairs to review (default: the primary run)")
    report = sub.add_parser("report", help="print the project's HTML report path, open or rebuild it")
    report.add_argument("--open", action="store_true", help="open it in a browser")
    report.add_argument("--rebuild", action="store_true", help="rebuild it first (`dvc repro render`)")
    init = sub.add_parser("init", help="make a DVC project around a folder of images",
                          description="Write dvc.yaml and params.yaml (the pipeline of this installed package, "
                                      "fetch pointing at --images) into DIR, with git and dvc initialised.")
    init.add_argument("dir", nargs="?", default=".", help="project folder (default: the current one)")
    init.add_argument("--images", required=True, help="the folder of images")
    init.add_argument("--labels", help="Kaggle-style image_id,label CSV")
    init.add_argument("--force", action="store_true", help="overwrite an existing dvc.yaml / params.yaml")
    return top


def main(argv=None) -> int:
    """Run the ``neardup`` command; returns the exit code (2 on a user error, with one line on stderr)."""
    args, rest = parser().parse_known_args(argv)
    if rest and args.command != "review":
        parser().error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "find":
            return _find(args)
        if args.command == "review":
            return _review(args, rest)
        if args.command == "init":
            return _init(args)
        return _report(args)
    except (UserError, FileNotFoundError) as exc:
        print(f"neardup: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neardup: interrupted; finished work is kept (cache.dir): the same command resumes", file=sys.stderr)
        return 130
    except OSError as exc:
        message = os_error_message(exc)
        if message is None:
            raise
        print(f"neardup: error: {message}", file=sys.stderr)
        return 2


__all__ = ["main", "parser"]
