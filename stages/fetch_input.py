"""fetch_input: Check every params group, then keep the entries of ``fetch.input`` that DVC cannot hash
(FIFOs, devices, broken symlinks, ...) out of its sight in ``.dvcignore``. Runs before every ``dvc repro``.

The logic is ``run`` in :mod:`neardup.fetch.guard`; a ``neardup init`` project runs the same function through
``neardup stage fetch_input``.
"""
import sys

from neardup.fetch.guard import run
from neardup.stage import main

if __name__ == "__main__":
    sys.exit(main("fetch_input", run, prog="python -m stages.fetch_input"))
