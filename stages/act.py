"""act: Keep / remove lists and leakage-safe folds from the primary variant.

The logic is ``run`` in :mod:`neardup.act`; a ``neardup init`` project runs the same function through
``neardup stage act``.
"""
import sys

from neardup.act import run
from neardup.stage import main

if __name__ == "__main__":
    sys.exit(main("act", run, prog="python -m stages.act"))
