"""Shared plumbing for the thin ``stages/*.py`` runners."""
from __future__ import annotations

import argparse
import logging
import os
import sys


def setup_logging() -> None:
    """Log to stderr at INFO (``NEARDUP_LOG_LEVEL`` overrides) and quieten TensorFlow's C++ log."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    level = os.environ.get("NEARDUP_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def parse_args(description: str, *args: tuple[str, dict]) -> argparse.Namespace:
    """Parse ``--name value`` options; each ``(flag, kwargs)`` goes to ``add_argument``."""
    parser = argparse.ArgumentParser(description=description)
    for flag, kwargs in args:
        parser.add_argument(flag, **{"required": True, **kwargs})
    return parser.parse_args()


def run_stage(main) -> None:
    """Run ``main()``; a user-facing error ends the stage with its message, not a traceback."""
    from neardup.params import ParamsError

    setup_logging()
    try:
        main()
    except (ParamsError, FileNotFoundError) as exc:
        logging.getLogger("neardup").error("%s", exc)
        sys.exit(2)
    except RuntimeError as exc:  # SourceError, WeightsUnavailableError, ...
        if type(exc).__module__.startswith("neardup"):
            logging.getLogger("neardup").error("%s", exc)
            sys.exit(2)
        raise
