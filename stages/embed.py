"""embed: One model at one image size over the real images (``--plants``: their planted copies).

The logic is ``run`` in :mod:`neardup.embed.stage`; a ``neardup init`` project runs the same function through
``neardup stage embed``.
"""
import sys

from neardup.embed.stage import run
from neardup.stage import main

if __name__ == "__main__":
    sys.exit(main("embed", run, prog="python -m stages.embed"))
