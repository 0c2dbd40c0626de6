"""evaluate: One variant's quality over the eps sweep, the chosen eps and the review queue at it.

The logic is ``run`` in :mod:`neardup.evaluate`; a ``neardup init`` project runs the same function through
``neardup stage evaluate``.
"""
import sys

from neardup.evaluate import run
from neardup.stage import main

if __name__ == "__main__":
    sys.exit(main("evaluate", run, prog="python -m stages.evaluate"))
