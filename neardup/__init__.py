"""neardup: find duplicate and near-duplicate images in ML datasets.

One subpackage (or module) per stage of the DVC pipeline (``dvc.yaml``), each named after it:
``fetch`` -> ``plant`` -> ``embed`` / ``hash`` -> ``cluster`` (on ``search``) -> ``evaluate`` ->
``act`` / ``render``. Shared by all: ``contract`` (file names, columns, readers and writers),
``params`` (typed ``params.yaml``), ``layout`` (where every file of a project lies), ``images``, ``cache``,
``engine`` and ``transforms``. Each stage is one function, ``run(params, layout, ...)``, in its own
package; ``stage`` lists them and runs one in a project (the repository's ``stages/`` runners and
``neardup stage NAME``); ``find_duplicates`` (``api``) runs the same functions in one call, and ``cli``
is the ``neardup`` command. Importing the package has no side effects.
"""

__all__ = ["find_duplicates"]


def __getattr__(name: str):
    """``neardup.find_duplicates`` (:mod:`neardup.api`), imported on first use so that importing the
    package stays light for the pipeline's stages."""
    if name == "find_duplicates":
        from neardup.api import find_duplicates

        return find_duplicates
    raise AttributeError(f"module 'neardup' has no attribute {name!r}")
