"""``neardup init``: make a DVC project around a folder of images, with the installed package's pipeline.

The project gets the package's ``dvc.yaml`` and ``params.yaml`` (the same stages and defaults as the
neardup repository), with ``fetch`` pointing at the folder. The stages run the installed package
(``neardup stage <name>``: the same ``run`` functions as the repository's ``stages/`` runners, see
:mod:`neardup.stage`); a digest of the installed package stands for their code (:func:`project_dvc_yaml`).
The project is offline and quiet as the repository is (no DVC analytics; ``dvc plots`` pages with
vega inlined).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from neardup.contract import REVIEW_COLUMNS, UserError, empty_frame, write_table
from neardup.layout import CODE_CHECK, Layout

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent
#: Lines added to the project's .gitignore.
IGNORED = ["/.neardup_cache/", "/logs/", "/dvc_plots/"]


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies inside it (a portable project), else absolute."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def project_dvc_yaml() -> str:
    """The package's ``dvc.yaml`` for a project of its own: each stage runs the installed command
    (``python -m stages.X`` -> ``neardup stage X``), and its code dependencies (the repository's files,
    ``neardup/...`` and ``stages/...``) give way to one file, ``vars.paths.code_check``, that the first
    stage writes on every run: the installed package's version and a digest of its files
    (:func:`neardup.stage.code_digest`). An upgrade changes it, so every stage reruns; the project names
    no path outside itself but its images, and moves to another folder or machine as it is."""
    spec = yaml.safe_load((PACKAGE / "pipeline.yaml").read_text())  # the repository's dvc.yaml, renamed
    next(v["paths"] for v in spec["vars"] if "paths" in v)["code_check"] = CODE_CHECK
    spec["stages"]["fetch_input"]["outs"].append({"${paths.code_check}": {"cache": False}})
    for name, stage in spec["stages"].items():
        stage["cmd"] = re.sub(r"python -m stages\.(\w+)", r"neardup stage \1", stage["cmd"])
        data = [d for d in stage.get("deps", []) if not str(d).startswith(("neardup/", "stages/"))]
        stage["deps"] = data if name == "fetch_input" else ["${paths.code_check}", *data]
        if not stage["deps"]:
            del stage["deps"]
    header = ("# Made by `neardup init`. Each stage runs `neardup stage NAME`, the stage's function in the installed\n"
              "# neardup package; ${paths.code_check} (the package's version and a digest of its files, written\n"
              "# by fetch_input) stands for its code, so an upgrade reruns the stages. `vars.paths` is the layout.\n")
    return header + yaml.safe_dump(spec, sort_keys=False, width=120)


def init_project(dest: str | os.PathLike, *, images: str | os.PathLike, labels: str | os.PathLike | None = None,
                 force: bool = False) -> Path:
    """Make ``dest`` a neardup DVC project whose dataset is the folder ``images``.

    Parameters
    ----------
    dest : path
        The project folder (created if missing; a git repository is initialised there if it is not one).
    images : path
        The folder of images (any nesting); it is a DVC dependency of the fetch stage.
    labels : path, optional
        A Kaggle-style ``image_id,label`` CSV.
    force : bool
        Overwrite an existing ``dvc.yaml`` / ``params.yaml``.

    Returns
    -------
    Path, the project folder; run ``dvc repro`` there.
    """
    from neardup.params import default_params

    dest = Path(dest).resolve()
    images = Path(images).resolve()
    if not images.is_dir():
        raise UserError(f"{images}: not a folder of images (neardup init --images FOLDER)")
    labels_path = Path(labels).resolve() if labels else None
    if labels_path is not None and not labels_path.is_file():
        raise UserError(f"{labels_path}: labels CSV not found (neardup init --labels FILE)")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml"):
        if (dest / name).exists() and not force:
            raise UserError(f"{dest / name} exists: this is already a project (use --force to overwrite)")
    root = Path(os.path.commonpath([str(images)] + ([str(labels_path.parent)] if labels_path else [])))
    if root not in (images, images.parent):  # fetch.input (a DVC dependency) would be a far larger folder
        raise UserError(f"{labels_path}: put the labels CSV in the images folder or beside it (as Kaggle's "
                        "train_images/ and train.csv)")
    params = default_params()
    params["fetch"].update(source="folder", input=_relative(root, dest), sets=[],
                           folder={"images": _relative(images, root) if images != root else ".",
                                   "labels_csv": _relative(labels_path, root) if labels_path else "",
                                   "label_map": ""})
    (dest / "params.yaml").write_text("# Made by `neardup init`; every key is explained in the neardup repository's "
                                      "params.yaml\n" + yaml.safe_dump(params, sort_keys=False))
    (dest / "dvc.yaml").write_text(project_dvc_yaml())
    reviews = Layout.of_project(dest).path("reviews")
    if not reviews.exists():
        write_table(empty_frame(REVIEW_COLUMNS), reviews)
    gitignore = dest / ".gitignore"
    present = gitignore.read_text().splitlines() if gitignore.exists() else []
    with gitignore.open("a") as fh:
        for line in IGNORED:
            if line not in present:
                fh.write(line + "\n")
    if not (dest / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    dvc = [sys.executable, "-m", "dvc"]
    if not (dest / ".dvc").exists():
        subprocess.run([*dvc, "init", "-q"], cwd=dest, check=True)
    # offline and quiet, as the neardup repository: no analytics or update check, and `dvc plots` pages
    # that draw without the internet (vega inlined: the package's copy of the repository's template)
    shutil.copy(PACKAGE / "plots_template.html", dest / ".dvc" / "plots_template.html")
    for key, value in (("core.analytics", "false"), ("core.check_update", "false"),
                       ("plots.html_template", "plots_template.html")):
        subprocess.run([*dvc, "config", key, value], cwd=dest, check=True)
    log.info("neardup project in %s around %s; run `dvc repro` there", dest, images)
    return dest
