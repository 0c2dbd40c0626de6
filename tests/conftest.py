"""Shared fixtures: real photos from installed packages, and an isolated environment for DVC."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
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
