"""render: Figures, the quality report and the HTML report with its review view.

The logic is ``run`` in :mod:`neardup.render.stage`; a ``neardup init`` project runs the same function through
``neardup stage render``.
"""
import sys

from neardup.render.stage import run
from neardup.stage import main

if __name__ == "__main__":
    sys.exit(main("render", run, prog="python -m stages.render"))
