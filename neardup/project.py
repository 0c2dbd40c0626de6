"""``neardup init``: make a DVC project around a folder of images, with the installed package's pipeline.

The project gets the package's ``dvc.yaml`` and ``params.yaml`` (the same stages and defaults as the
neardup repository), with ``fetch`` pointing at the folder. The stages run the installed package
(``neardup stage <name>``: the same ``run`` functions as the repository's ``stages/`` runners, see
:mod:`neardup.stage`), and their code dependencies point at the installed files (``${code}/...``,
``code`` being the package's folder), so DVC reruns what a package upgrade changes.
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
from neardup.layout import Layout

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


def project_dvc_yaml(code: Path) -> str:
    """The package's ``dvc.yaml`` with its stages run by the installed command (``python -m stages.X``
    -> ``neardup stage X``) and its code dependencies (``neardup/...``) at ``${code}/...``; the
    repository's runners (``stages/...``) give way to the command's module (``${code}/cli.py``)."""
    text = (PACKAGE / "pipeline.yaml").read_text()  # the repository's dvc.yaml, under a name DVC ignores
    text = re.sub(r"python -m stages\.(\w+)", r"neardup stage \1", text)
    text = re.sub(r"(?m)^(\s*- )stages/__init__\.py$", r"\1${code}/cli.py", text)
    text = re.sub(r"(?m)^\s*- stages/\w+\.py\n", "", text)
    text = re.sub(r"(?m)^(\s*- )neardup/", r"\1${code}/", text)
    header = ("# Made by `neardup init`. Each stage runs `neardup stage NAME`: the stage's function in the installed\n"
              "# neardup package, whose files (${code}) are the stages' code deps, so an upgrade reruns what it changes.\n"
              "# `vars.paths` is the project's layout. The stages are documented in the neardup repository's docs.\n")
    text = header + text[text.index("vars:"):]
    return text.replace("vars:\n", f"vars:\n- code: {code.as_posix()}  # the installed neardup package\n", 1)


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
    (dest / "dvc.yaml").write_text(project_dvc_yaml(PACKAGE))
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
    if not (dest / ".dvc").exists():
        dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
        subprocess.run([dvc, "init", "-q"], cwd=dest, check=True)
    log.info("neardup project in %s around %s; run `dvc repro` there", dest, images)
    return dest
