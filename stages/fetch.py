"""fetch: Build the manifest (and ground truth) of the dataset ``params.yaml: fetch`` names.

The logic is ``run`` in :mod:`neardup.fetch.stage`; a ``neardup init`` project runs the same function through
``neardup stage fetch``.
"""
import sys

from neardup.fetch.stage import run
from neardup.stage import main

if __name__ == "__main__":
    sys.exit(main("fetch", run, prog="python -m stages.fetch"))
