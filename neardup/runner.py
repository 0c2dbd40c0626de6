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


def ordered_map(function, items, *, desc: str = "", unit: str = "item", threads: int | None = None, count=None):
    """``function(item)`` for each of ``items``, yielded in order, computed on one thread per core (for
    work that releases the GIL: decoding, hashing bytes, OpenCV), with a progress bar when ``desc`` is
    given (advanced by ``count(item)`` per item, default 1). ``function`` must not raise for one bad
    item (return the error instead)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    items = list(items)
    threads = max(1, min(threads or cpu_cores(), len(items)))
    count = count or (lambda item: 1)
    total = sum(count(item) for item in items)
    with tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not desc or not items) as bar:
        if threads == 1:
            for item in items:
                yield function(item)
                bar.update(count(item))
            return
        with ThreadPoolExecutor(threads) as pool:
            for item, result in zip(items, pool.map(function, items)):
                yield result
                bar.update(count(item))


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
    _append_timing({"stage": stage, "run": run, "images": images, "seconds": round(seconds, 3),
                    "images_per_second": None if rate is None else round(rate, 2), **extra})


def _append_timing(line: dict) -> None:
    """Append one JSON line to :data:`TIMINGS`."""
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    with TIMINGS.open("a") as fh:
        fh.write(json.dumps(line) + "\n")


def peak_memory_mb() -> float:
    """Peak resident memory (MB) of this process, or of the largest child it waited for if larger."""
    import resource

    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def _run_name(argv: list[str]) -> str:
    """The stage run's name for the timing line: its ``--out`` file or folder (``embed``: the model run)."""
    for flag, value in zip(argv, argv[1:]):
        if flag == "--out":
            name = Path(value).name
            return name[: -len(".npz")] if name.endswith(".npz") else name
    return ""


def run_stage(main) -> None:
    """Run ``main()``; a user error (:class:`neardup.contract.UserError`), a missing file, a full
    disk or a folder it may not write ends the stage with a one-line message and exit code 2, an
    interrupt (Ctrl-C) with one line and exit code 130, never a traceback. A stage that finishes
    appends its wall seconds and peak memory to :data:`TIMINGS` (``"step": "stage"``)."""
    import time

    from neardup.contract import UserError, os_error_message

    setup_logging()
    start = time.perf_counter()
    log = logging.getLogger("neardup")
    try:
        main()
    except (UserError, FileNotFoundError) as exc:
        log.error("%s", exc)
        sys.exit(2)
    except KeyboardInterrupt:
        log.error("interrupted; finished work is kept: `dvc repro` resumes from there")
        sys.exit(130)
    except OSError as exc:
        message = os_error_message(exc)
        if message is None:
            raise
        log.error("%s", message)
        sys.exit(2)
    module = getattr(main, "__module__", "")
    stage = Path(sys.argv[0]).stem if module == "__main__" else module.rpartition(".")[2]
    seconds, peak, run = time.perf_counter() - start, peak_memory_mb(), _run_name(sys.argv)
    cpu = time.process_time()  # the whole process: start-up included
    log.info("%s %s finished in %.1f s, peak memory %.0f MB", stage, run, seconds, peak)
    _append_timing({"stage": stage, "run": run, "step": "stage", "seconds": round(seconds, 3),
                    "cpu_seconds": round(cpu, 3), "peak_mb": round(peak, 1)})
