"""hash: One perceptual hash over the real images and the planted copies.

The logic is ``run`` in :mod:`neardup.hash`; a ``neardup init`` project runs the same function through
``neardup stage hash``.
"""
import sys

from neardup.hash import run
from neardup.stage import main

if __name__ == "__main__":
    sys.exit(main("hash", run, prog="python -m stages.hash"))
