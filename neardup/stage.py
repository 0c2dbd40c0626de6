"""One stage of the pipeline, run in a project: what ``dvc.yaml`` calls.

Every stage is one function, ``run(params, layout, **options)`` in the stage's own package
(:data:`STAGES`): ``params`` is the whole ``params.yaml`` (the function checks the groups it reads),
``layout`` the project's :class:`neardup.layout.Layout`. The front doors only call these functions:
this repository's ``dvc.yaml`` through the thin runners of ``stages/`` (``python -m stages.embed``), a
``neardup init`` project through the installed command (``neardup stage embed``), and
``find_duplicates`` directly (:func:`primary_steps`), so the three cannot drift apart.

A stage run here logs at INFO, ends a user error with one line and exit code 2 (never a traceback),
and appends its wall seconds, CPU seconds and peak memory to :data:`TIMINGS`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

#: Where stages append their timings: a file git does not track (see .gitignore), never a DVC output.
TIMINGS = Path("logs") / "timings.jsonl"

_VARIANT = ("--variant", {"required": True, "help": "a variant key: <model>_<size>, or a hash method"})
#: name -> (the module holding its ``run``, what it does, its options for argparse).
STAGES = {
    "fetch_input": ("neardup.fetch.guard", "check every params group, and keep the entries of fetch.input DVC "
                    "cannot hash out of its sight (.dvcignore)", ()),
    "fetch": ("neardup.fetch.stage", "the manifest (and ground truth) of the dataset params.yaml's fetch names", ()),
    "plant": ("neardup.plant", "transformed copies of sampled real images, which measure recall", ()),
    "embed": ("neardup.embed.stage", "one model at one image size over the real images, or their planted copies",
              (("--model", {"required": True}), ("--size", {"required": True, "help": "input side in px, or auto"}),
               ("--plants", {"action": "store_true", "help": "the planted copies, not the real images"}))),
    "hash": ("neardup.hash", "one perceptual hash over the real images and the planted copies",
             (("--method", {"required": True, "help": "a hash of hash.methods"}),)),
    "cluster": ("neardup.cluster.stage", "scored candidate pairs and DBSCAN groups of one variant at every eps",
                (_VARIANT, ("--baseline", {"action": "store_true", "help": "a hash baseline: vectors as they are"}))),
    "evaluate": ("neardup.evaluate", "one variant's quality over the eps sweep, the chosen eps and the review queue",
                 (_VARIANT,)),
    "act": ("neardup.act", "keep / remove lists and leakage-safe folds from the primary variant", ()),
    "render": ("neardup.render.stage", "figures, the quality report and the HTML report", ()),
}


def primary_steps(params: dict) -> list[tuple[str, dict]]:
    """The stages (name, options) that compute the primary variant (the first model at the first size),
    in ``dvc.yaml``'s order: what ``find_duplicates`` runs. The hash mixed into the CNN scores
    (``cluster.hash``) is computed only when ``cluster.hash_weight`` uses it; folds too few images
    cannot fill are a warning there, not an error (nobody chose ``act.n_splits``)."""
    from neardup.contract import primary_variant

    model, size = params["embed"]["models"][0], params["embed"]["sizes"][0]
    variant = primary_variant(params["embed"]["models"], params["embed"]["sizes"])
    hashing = [("hash", {"method": params["cluster"]["hash"]})] if params["cluster"]["hash_weight"] else []
    return [("fetch", {}), ("plant", {}), ("embed", {"model": model, "size": size}),
            ("embed", {"model": model, "size": size, "plants": True}), *hashing,
            ("cluster", {"variant": variant}), ("evaluate", {"variant": variant}), ("act", {"folds_required": False})]


def installed_version() -> str | None:
    """The installed neardup distribution's version, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neardup")
    except PackageNotFoundError:
        return None


def code_digest() -> str:
    """The installed package in one line: its version and a SHA-256 of its files (path and bytes of
    every ``.py``, ``.yaml`` and ``.html`` file under it, sorted). What a ``neardup init`` project's
    stages depend on for their code."""
    import hashlib

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml", ".html") and p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"neardup {installed_version() or 'unknown'} {digest.hexdigest()}"


def stage_function(name: str):
    """The ``run`` function of the stage ``name``."""
    return importlib.import_module(STAGES[name][0]).run


def setup_logging() -> None:
    """Log to stderr at INFO (``NEARDUP_LOG_LEVEL`` overrides) and quieten TensorFlow's C++ log."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    level = os.environ.get("NEARDUP_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def record_timing(root: Path, stage: str, variant: str, *, images: int, seconds: float, rate: float,
                  **extra) -> None:
    """Append one timing line to ``root /`` :data:`TIMINGS` (``root``: the project's, or ``find``'s
    output folder): images in the output, wall seconds of the step, ``rate`` (images/s over the images
    computed in this call, not taken from the cache; NaN: none) and any ``extra`` fields (embed: the
    runtime)."""
    rate = None if rate != rate else rate
    _append_timing(root, {"stage": stage, "variant": variant, "images": images, "seconds": round(seconds, 3),
                          "images_per_second": None if rate is None else round(rate, 2), **extra})


def _append_timing(root: Path, line: dict) -> None:
    path = Path(root) / TIMINGS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(line) + "\n")


def peak_memory_mb() -> float:
    """Peak resident memory (MB) of this process, or of the largest child it waited for if larger."""
    import resource

    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def guarded(call, say, *, resume: str) -> int:
    """``call()``, returning its exit code (0 for None). A user error
    (:class:`neardup.contract.UserError`), a missing file, a full disk or a folder it may not write
    gives one line through ``say(text, "error")`` and exit code 2, an interrupt (Ctrl-C) one line
    ``say(text, "interrupted")`` ending in ``resume`` and 130: never a traceback. Shared by the stages
    and the ``neardup`` command."""
    from neardup.contract import UserError, os_error_message

    try:
        return int(call() or 0)
    except (UserError, FileNotFoundError) as exc:
        say(str(exc), "error")
    except KeyboardInterrupt:
        say(f"interrupted; {resume}", "interrupted")
        return 130
    except OSError as exc:
        message = os_error_message(exc)
        if message is None:
            raise
        say(message, "error")
    return 2


def parser(name: str, prog: str) -> argparse.ArgumentParser:
    """The options of the stage ``name`` (:data:`STAGES`)."""
    _, description, options = STAGES[name]
    out = argparse.ArgumentParser(prog=prog, description=f"{name}: {description} (in the project of the current "
                                                         f"folder: its params.yaml and dvc.yaml's vars.paths).")
    for flag, kwargs in options:
        out.add_argument(flag, **kwargs)
    return out


def main(name: str, run=None, argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Run the stage ``name`` in the project of the current folder; returns the exit code.

    Parameters
    ----------
    name : str
        A key of :data:`STAGES`.
    run : callable, optional
        The stage's ``run`` (default: looked up in :data:`STAGES`; the ``stages/`` runners pass it).
    argv : list of str, optional
        The stage's options (default: ``sys.argv[1:]``).
    """
    from neardup.layout import Layout
    from neardup.params import read_params

    args = vars(parser(name, prog or f"neardup stage {name}").parse_args(argv))
    setup_logging()
    log = logging.getLogger("neardup")
    start, variant = time.perf_counter(), args.get("variant") or args.get("method") or ""
    if name == "embed":
        from neardup.contract import variant_key

        variant = variant_key(args["model"], args["size"]) + (".plants" if args["plants"] else "")

    def call():
        params = read_params("params.yaml")
        (run or stage_function(name))(params, Layout.find("."), **args)

    code = guarded(call, lambda text, kind: log.error("%s", text),
                   resume="finished work is kept: `dvc repro` resumes from there")
    if code == 0:
        seconds, peak, cpu = time.perf_counter() - start, peak_memory_mb(), time.process_time()
        log.info("%s finished in %.1f s, peak memory %.0f MB", " ".join(filter(None, (name, variant))), seconds, peak)
        _append_timing(Path("."), {"stage": name, "variant": variant, "step": "stage",
                                   "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                                   "peak_mb": round(peak, 1)})
    return code
