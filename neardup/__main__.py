"""``python -m neardup``: the ``neardup`` command (:mod:`neardup.cli`)."""
import sys

from neardup.cli import main

sys.exit(main())
