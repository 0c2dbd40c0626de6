"""cluster: Scored candidate pairs and DBSCAN groups of one variant for every eps of ``cluster.eps``.

The logic is ``run`` in :mod:`neardup.cluster.stage`; a ``neardup init`` project runs the same function through
``neardup stage cluster``.
"""
import sys

from neardup.cluster.stage import run
from neardup.stage import main

if __name__ == "__main__":
    sys.exit(main("cluster", run, prog="python -m stages.cluster"))
