"""neardup: find duplicate and near-duplicate images in ML datasets.

One subpackage (or module) per stage of the DVC pipeline (``dvc.yaml``), each named after it:
``fetch`` -> ``plant`` -> ``embed`` / ``hash`` -> ``cluster`` (on ``search``) -> ``evaluate`` ->
``act`` / ``render``. Shared by all: ``contract`` (file names, columns, readers and writers),
``params`` (typed ``params.yaml``), ``runner`` (the plumbing of the thin ``stages/*.py`` runners),
``images``, ``cache`` and ``transforms``. Importing the package has no side effects.
"""
