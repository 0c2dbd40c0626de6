"""Shared plumbing for the thin ``neardup/stages/*.py`` runners: logging, arguments, clean user errors, timings."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

#: Where stages append their timings: a file git does not track (see .gitignore), never a DVC output.
TIMINGS = Path("logs") / "timings.jsonl"


def cpu_cores() -> int:
    """The cores this process may run on: its affinity mask (else ``os.cpu_count()``); inside a Dask
    task, at most the worker's threads (``--nthreads``: the cores a worker was given)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        cores = max(1, os.cpu_count() or 1)
    dask = sys.modules.get("distributed")  # only imported where Dask runs
    if dask is not None:
        try:
            return min(cores, int(dask.get_worker().state.nthreads))
        except ValueError:  # not inside a task
            pass
    return cores


def setup_logging() -> None:
    """Log to stderr at INFO (``NEARDUP_LOG_LEVEL`` overrides) and quieten TensorFlow's C++ log."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    level = os.environ.get("NEARDUP_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def parse_args(description: str, *args: tuple[str, dict]) -> argparse.Namespace:
    """Parse ``--name value`` options; each ``(flag, kwargs)`` goes to ``add_argument`` (required by default)."""
    parser = argparse.ArgumentParser(description=description)
    for flag, kwargs in args:
        parser.add_argument(flag, **{"required": True, **kwargs})
    return parser.parse_args()


def record_timing(stage: str, run: str, *, images: int, seconds: float, rate: float, **extra) -> None:
    """Append one timing line to :data:`TIMINGS`: images in the output, wall seconds of the step,
    ``rate`` (images/s over the images computed in this call, not taken from the cache; NaN: none)
    and any ``extra`` fields (embed: the runtime)."""
    rate = None if rate != rate else rate
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    with TIMINGS.open("a") as fh:
        fh.write(json.dumps({"stage": stage, "run": run, "images": images, "seconds": round(seconds, 3),
                             "images_per_second": None if rate is None else round(rate, 2), **extra}) + "\n")


def run_stage(main) -> None:
    """Run ``main()``; a user error (:class:`neardup.contract.UserError`) or a missing file ends the
    stage with a one-line message and exit code 2, not a traceback."""
    from neardup.contract import UserError

    setup_logging()
    try:
        main()
    except (UserError, FileNotFoundError) as exc:
        logging.getLogger("neardup").error("%s", exc)
        sys.exit(2)
