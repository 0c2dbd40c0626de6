"""plant: Transformed copies of sampled real images, written under the pipeline's own data folder.

The logic is ``run`` in :mod:`neardup.plant`; a ``neardup init`` project runs the same function through
``neardup stage plant``.
"""
import sys

from neardup.plant import run
from neardup.stage import main

if __name__ == "__main__":
    sys.exit(main("plant", run, prog="python -m stages.plant"))
