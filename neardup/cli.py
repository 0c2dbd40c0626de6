"""The ``neardup`` command (also ``python -m neardup``).

Subcommands mirror what users do:

- ``neardup find DIR``: one shot on any folder, no DVC needed (:func:`neardup.find_duplicates`);
- ``neardup review``: review the proposed pairs of a DVC project (run from its root);
- ``neardup report``: open, or rebuild, the project's HTML report;
- ``neardup init``: make a DVC project (``dvc.yaml``, ``params.yaml``) around a folder, with this
  package's pipeline, so a user's own repository gets it without cloning neardup's;
- ``neardup stage NAME``: one stage of the pipeline in the project of the current folder (what an
  ``init`` project's ``dvc.yaml`` runs; :mod:`neardup.stage`).

A user error ends with one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import webbrowser

from neardup.cache import user_cache_dir
from neardup.contract import GROUPS, QUEUE, SKIPPED, UserError
from neardup.stage import STAGES, guarded, installed_version
from neardup.stage import main as stage_main

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
    if args.eps is not None:  # act at this eps: the sweep holds it alone
        overrides["cluster"] = {"eps": [args.eps]}
    if args.prefer_set:
        overrides["act"] = {"prefer_set": args.prefer_set}
    if args.cache is not None:
        overrides["cache"] = {"dir": args.cache}
    images = args.folder
    if args.sets:
        if args.folder:
            raise UserError("give a folder or --sets NAME=PATH ..., not both")
        pairs = [item.partition("=") for item in args.sets]
        bad = [item for item, (name, eq, path) in zip(args.sets, pairs) if not (name and eq and path)]
        if bad:
            raise UserError(f"--sets {bad[0]!r}: give each set as NAME=PATH, e.g. --sets train=train_images "
                            f"test=test_images")
        images = {name: path for name, _, path in pairs}
    elif not args.folder:
        raise UserError("give a folder of images, or --sets NAME=PATH ... (neardup find --help)")
    from neardup.layout import Layout

    result = find_duplicates(images, labels=args.labels, out=args.out, splits=not args.no_splits, **overrides)
    report = result.report()
    layout = Layout.at(args.out)
    n_groups = result.groups["group"].nunique() if len(result.groups) else 0
    metrics = result.metrics
    print(f"{len(result.manifest)} images ({len(result.skipped)} skipped: {layout.dataset / SKIPPED}); "
          f"{result.variant}, eps {result.eps:g}: {result.reason.splitlines()[0]}")
    print(f"{n_groups} duplicate groups ({int(metrics.get('n_label_conflicts', 0))} with conflicting labels), "
          f"{len(result.remove)} images to remove; planted copies found: {metrics.get('planted_recall', float('nan')):.2f}")
    sets = sorted(set(result.manifest["set"]))
    if len(sets) > 1:
        print(f"sets {', '.join(sets)}: {int(metrics.get('n_cross_set_groups', 0))} groups cross them "
              f"(leakage; {layout.path('remove').name} keeps {args.prefer_set or 'the largest image'} in each)")
    for name in ("keep", "remove", "folds"):
        print(f"  {layout.path(name)}")
    print(f"  {layout.evaluation(result.variant) / GROUPS} (groups), "
          f"{layout.evaluation(result.variant) / QUEUE} (pairs to review)")
    print(f"  {report} (report)")
    print(f"review the pairs: cd {args.out} && neardup review (or the report's review view, then neardup review "
          f"--import FILE there); the next `neardup find ... --out {args.out}` counts the verdicts")
    if args.open:
        webbrowser.open(report.resolve().as_uri())
    return 0


def _review(args, rest) -> int:
    from neardup import review

    argv = list(rest)
    if args.variant:
        argv += ["--variant", args.variant]
    return int(review.main(argv, prog="neardup review") or 0)


def _report(args) -> int:
    from neardup.layout import Layout

    layout = Layout.find(".")
    page = layout.path("html")
    if args.rebuild:
        if not layout.is_project:
            raise UserError("no dvc.yaml here: `neardup report --rebuild` runs `dvc repro render` in a project's root; "
                            "in a `neardup find` output folder, run the same `neardup find` again")
        dvc = shutil.which("dvc")
        if dvc is None:
            raise UserError("dvc is not installed here: pip install dvc")
        code = subprocess.call([dvc, "repro", "render"])
        if code:
            return code
    if not page.is_file():
        raise UserError(f"{page} does not exist: run `dvc repro` in a project (or `neardup report --rebuild`), or "
                        f"`neardup find FOLDER --out .` here, first")
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
    top.add_argument("--version", action="version", version=f"neardup {installed_version() or 'unknown (not installed)'}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    find = sub.add_parser("find", help="find duplicates in a folder (no DVC needed)",
                          description="Find the duplicates of a folder of images with the pipeline's defaults and "
                                      "write the groups, keep/remove lists and the HTML report to --out.")
    find.add_argument("folder", nargs="?", help="folder of images (scanned recursively; top-level folders named "
                                                "train, test, val, valid, validation or dev become sets)")
    find.add_argument("--sets", nargs="+", metavar="NAME=PATH", help="named sets instead of a folder, e.g. "
                                                                     "--sets train=train_images test=test_images")
    find.add_argument("--no-splits", action="store_true", help="read a folder as one set, whatever its folders")
    find.add_argument("--prefer-set", metavar="NAME", help="keep the image of this set in each group "
                                                           "(act.prefer_set), e.g. test")
    find.add_argument("--labels", help="Kaggle-style image_id,label CSV (ids relative to the folder or bare names)")
    find.add_argument("--model", help="embedding model, e.g. efficientnet-lite0 (default: params.yaml's first)")
    find.add_argument("--size", help="input side in px, or auto (default: params.yaml's first)")
    find.add_argument("--plant", type=int, help="planted copies that measure recall (default: params.yaml's plant.n)")
    find.add_argument("--eps", type=float, help="act at this distance instead of the automatic choice (smaller: "
                                                "stricter; the report's eps table shows what each eps finds)")
    find.add_argument("--out", default="neardup_out", help="output folder (default: %(default)s); a later scan "
                                                          "never reads it as images")
    find.add_argument("--cache", metavar="DIR", help=f"content cache: vectors, keypoints, converted models, so a "
                                                     f"rerun computes only new images (default: {user_cache_dir()}; "
                                                     f"'' for none)")
    find.add_argument("--open", action="store_true", help="open the report in a browser")
    review = sub.add_parser("review", help="review the proposed pairs (in a project or a find output folder)",
                            description="Review pending pairs in the terminal, or import verdicts exported from the "
                                        "HTML report's review view (--import FILE); run in a project's root or a "
                                        "`neardup find` output folder. All options: neardup review --help.",
                            add_help=False)
    review.add_argument("--variant", help="the variant whose pairs to review, e.g. efficientnet-lite2_260 "
                                          "(default: the primary variant)")
    report = sub.add_parser("report", help="print the HTML report's path, open or rebuild it",
                            description="Print the path of the HTML report of the project (or `neardup find` output "
                                        "folder) in the current folder; --open opens it, --rebuild reruns `dvc repro "
                                        "render` in a project first.")
    report.add_argument("--open", action="store_true", help="open it in a browser")
    report.add_argument("--rebuild", action="store_true", help="rebuild it first (`dvc repro render`)")
    init = sub.add_parser("init", help="make a DVC project around a folder of images",
                          description="Write dvc.yaml and params.yaml (the pipeline of this installed package, "
                                      "fetch pointing at --images) into DIR, with git and dvc initialised.")
    init.add_argument("dir", nargs="?", default=".", help="project folder (default: the current one)")
    init.add_argument("--images", required=True, help="the folder of images")
    init.add_argument("--labels", help="Kaggle-style image_id,label CSV")
    init.add_argument("--force", action="store_true", help="overwrite an existing dvc.yaml / params.yaml")
    stage = sub.add_parser("stage", help="run one stage of the pipeline in this project (what dvc.yaml calls)",
                           description="Run one stage of the pipeline in the project of the current folder, as an "
                                       "init project's dvc.yaml does; its options: neardup stage NAME --help.",
                           add_help=False)
    stage.add_argument("name", choices=sorted(STAGES), help="the stage")
    return top


def main(argv=None) -> int:
    """Run the ``neardup`` command; returns the exit code (2 on a user error, with one line on stderr)."""
    args, rest = parser().parse_known_args(argv)
    if rest and args.command not in ("review", "stage"):
        parser().error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "stage":  # the stage logs, handles its errors and records its timing itself
        return stage_main(args.name, argv=rest)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    commands = {"find": lambda: _find(args), "review": lambda: _review(args, rest), "init": lambda: _init(args),
                "report": lambda: _report(args)}
    return guarded(commands[args.command],
                   lambda text, kind: print(f"neardup: {'error: ' if kind == 'error' else ''}{text}", file=sys.stderr),
                   resume="finished work is kept (cache.dir): the same command resumes")


__all__ = ["main", "parser"]
