"""Shared fixtures: real photos from installed packages, an isolated environment for DVC, and the
stage commands of dvc.yaml to run a stage's process as `dvc repro` runs it."""
from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))  # tools/browser.py: `import browser`
sys.path.insert(0, str(REPO / "tools"))  # browser.py: headless-Chromium helpers


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """A few real RGB photos (uint8 arrays) that scikit-image and scikit-learn ship."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
            "rocket": data.rocket(), "china": china, "flower": flower}


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    """A ``cache.dir`` shared by the tests that build an Embedder, so each TFLite model is converted
    once per test session (about 20 s each)."""
    return str(tmp_path_factory.mktemp("model-cache"))


def tf_example(tf, **features) -> bytes:
    """One serialised ``tf.train.Example``: int values as int64 features, the rest as bytes."""
    feats = {}
    for key, value in features.items():
        if isinstance(value, int):
            feats[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feats[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def save(array: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


@pytest.fixture
def dvc_env(tmp_path_factory, monkeypatch):
    """Environment for running DVC in a temp repo without touching the user's config or the network."""
    home = tmp_path_factory.mktemp("home")
    env = {"HOME": str(home), "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(home / "dvc-site"),
           "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global"), "GIT_AUTHOR_NAME": "test",
           "GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_NAME": "test",
           "GIT_COMMITTER_EMAIL": "test@example.com", "TF_CPP_MIN_LOG_LEVEL": "2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bindir = str(Path(os.sys.executable).parent)
    monkeypatch.setenv("PATH", bindir + os.pathsep + os.environ.get("PATH", ""))
    return dict(os.environ)


DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
#: The pipeline's paths (dvc.yaml ``vars``), e.g. ``PATHS["dataset"] == "data/dataset"``.
PATHS = {k: v for block in DVC_YAML["vars"] for k, v in block.items()}["paths"]


def _lookup(scope: dict, expr: str):
    """The value of a dvc.yaml interpolation such as ``paths.dataset`` or ``embed.models[0]``."""
    value = scope
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", expr):
        value = value[int(index)] if index else value[name]
    return value


def stage_commands(params: dict):
    """``(stage, argv)`` of every stage of dvc.yaml with ``params`` (a params.yaml mapping), in the
    file's order, matrix stages expanded; ``argv`` runs the stage's runner with this Python."""
    scope = {**params, "paths": PATHS}

    def resolve(text, s):
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(_lookup(s, m.group(1))), text)

    for name, stage in DVC_YAML["stages"].items():
        matrix = stage.get("matrix", {})
        values = [_lookup(scope, str(v)[2:-1]) if str(v).startswith("${") else v for v in matrix.values()]
        for combo in itertools.product(*values):
            argv = shlex.split(resolve(stage["cmd"], {**scope, "item": dict(zip(matrix, combo))}))
            assert argv[:2] == ["python", "-m"], argv
            yield name, [sys.executable, *argv[1:]]


def run_stage_process(argv, cwd) -> subprocess.CompletedProcess:
    """Run a stage's runner in ``cwd`` (which holds its params.yaml), importing this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "NEARDUP_LOG_LEVEL": "WARNING"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def assert_clean_error(proc, pattern: str) -> str:
    """Exit code 2, no traceback, and one ERROR line whose message matches ``pattern``; returns it."""
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr[-3000:]
    message = errors[0].split(" ERROR neardup: ", 1)[1]
    assert re.search(pattern, message), message
    return message


def copy_pipeline(repo: Path) -> Path:
    """``repo`` (created) holding this checkout's pipeline as a DVC project needs it: dvc.yaml,
    params.yaml, the stage runners, the package and .gitignore."""
    import shutil

    repo.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml", "stages", "neardup", ".gitignore"):
        src = REPO / name
        (shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy(src, repo / name))
    return repo
