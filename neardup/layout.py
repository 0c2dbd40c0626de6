"""Where every file of a project lies: one :class:`Layout` for a DVC project and for ``find`` output.

The folders come from ``dvc.yaml``'s ``vars.paths`` (the package ships the repository's ``dvc.yaml``
as ``neardup/pipeline.yaml``), so a DVC project, a ``neardup init`` project and the ``out`` folder of
``find_duplicates`` / ``neardup find`` have the same relative layout, and every tool that reads a
project reads them all. File names inside the folders come from :mod:`neardup.contract`; the names
of a variant's files (``<variant>.npz``, ``<variant>.plants.npz``, ``<variant>.json``, ...) come from
here. ``dvc.yaml`` spells the same names in its ``deps`` / ``outs`` (``tests/test_layout.py`` checks
that both agree).

A *variant* is one entry of the sweep: a model at a size (``efficientnet-lite0_auto``) or a hash
baseline (``phash``); :func:`neardup.contract.variant_key` names it.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from neardup.contract import MANIFEST, PRIMARY_METRICS, TRUTH, UserError

#: The pipeline shipped in the package: the repository's dvc.yaml under a name DVC does not read.
PIPELINE = Path(__file__).with_name("pipeline.yaml")
#: What a ``neardup init`` project adds to ``vars.paths`` (as ``code_check``): where its fetch_input writes
#: the installed package's digest, its stages' code dependency (:func:`neardup.project.project_dvc_yaml`).
CODE_CHECK = "data/neardup_code.txt"
#: The curves each variant writes under ``plots``, one CSV per variant in each.
CURVES = ("eps", "pr", "transforms")


def _paths(dvc_yaml: Path) -> dict:
    """``vars.paths`` of a dvc.yaml (a mapping of name -> relative path)."""
    try:
        spec = yaml.safe_load(dvc_yaml.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"{dvc_yaml}: no dvc.yaml here; run this from a neardup project's root (made by "
                        f"`neardup init`) or give a `neardup find` output folder") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{dvc_yaml}: not valid YAML ({str(exc).splitlines()[0]})") from None
    for entry in spec.get("vars", []) if isinstance(spec, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("paths"), dict):
            return dict(entry["paths"])
    raise UserError(f"{dvc_yaml}: no vars.paths block; this is not a neardup pipeline (make one with `neardup init`)")


@functools.lru_cache(maxsize=1)
def _pipeline_paths() -> tuple:
    """``vars.paths`` of the package's pipeline (:data:`PIPELINE`), parsed once per process (it ships
    with the package and never changes): ``(name, path)`` pairs."""
    return tuple(_paths(PIPELINE).items())


@dataclass(frozen=True)
class Layout:
    """Every path of one project, rooted at ``root``.

    Parameters
    ----------
    root : Path
        The project's root (a DVC project) or the output folder of ``find``.
    paths : dict
        ``vars.paths`` of the pipeline: name -> path relative to ``root``.
    """

    root: Path
    paths: dict = field(repr=False)

    @classmethod
    def of_project(cls, root: str | os.PathLike = ".") -> "Layout":
        """The layout of the DVC project at ``root``, from its own ``dvc.yaml``."""
        root = Path(root)
        return cls(root, _paths(root / "dvc.yaml"))

    @classmethod
    def at(cls, out: str | os.PathLike) -> "Layout":
        """The pipeline's layout rooted at ``out`` (the output folder of ``find``)."""
        return cls(Path(out), dict(_pipeline_paths()))

    @classmethod
    def find(cls, folder: str | os.PathLike = ".") -> "Layout":
        """A DVC project's layout where ``folder`` has a ``dvc.yaml``, else the pipeline's layout there
        (a ``find`` output folder)."""
        folder = Path(folder)
        return cls.of_project(folder) if (folder / "dvc.yaml").is_file() else cls.at(folder)

    @property
    def is_project(self) -> bool:
        """Whether ``root`` is a DVC project (``dvc repro`` reruns it) rather than a ``find`` output."""
        return (self.root / "dvc.yaml").is_file()

    def path(self, name: str) -> Path:
        """The path named ``name`` in ``vars.paths`` (``dataset``, ``keep``, ``html``, ...)."""
        if name not in self.paths:
            raise UserError(f"dvc.yaml vars.paths has no {name!r}; it needs {sorted(dict(_pipeline_paths()))}")
        return self.root / self.paths[name]

    # --- the dataset and its planted copies -------------------------------------------------------
    @property
    def dataset(self) -> Path:
        return self.path("dataset")

    @property
    def plants(self) -> Path:
        return self.path("plants")

    def manifest(self, *, plants: bool = False) -> Path:
        """The manifest of the real images, or (``plants``) of the planted copies."""
        return (self.plants if plants else self.dataset) / MANIFEST

    @property
    def plants_truth(self) -> Path:
        return self.plants / TRUTH

    # --- per variant ------------------------------------------------------------------------------
    def embeddings(self, variant: str, *, plants: bool = False) -> Path:
        """One model at one size: the real images' vectors, or (``plants``) the planted copies'."""
        return self.path("embeddings") / f"{variant}{'.plants' if plants else ''}.npz"

    def hashes(self, method: str, *, plants: bool = False) -> Path:
        return self.path("hashes") / f"{method}{'.plants' if plants else ''}.npz"

    def clusters(self, variant: str) -> Path:
        return self.path("clusters") / variant

    def evaluation(self, variant: str) -> Path:
        return self.path("evaluation") / variant

    def metrics(self, variant: str) -> Path:
        return self.path("metrics") / f"{variant}.json"

    def curve(self, curve: str, variant: str) -> Path:
        """One of :data:`CURVES` of one variant (``plots/<curve>/<variant>.csv``)."""
        return self.path("plots") / curve / f"{variant}.csv"

    # --- the primary variant under fixed names ----------------------------------------------------
    @property
    def primary_metrics(self) -> Path:
        return self.path("primary") / PRIMARY_METRICS

    def primary_curve(self, curve: str) -> Path:
        return self.path("primary") / f"{curve}.csv"
