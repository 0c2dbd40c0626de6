"""End to end: the real `dvc repro` on a small demo dataset in a temporary git repository."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

COPIED = ["dvc.yaml", "params.yaml", "stages", "neardup", ".gitignore"]


def sh(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def dvc(*args, cwd, env):
    return sh([sys.executable, "-m", "dvc", *args], cwd, env)


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("repo")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, path / name)
    (path / "data" / "raw").mkdir(parents=True)
    (path / "data" / "raw" / ".gitkeep").touch()
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["fetch"]["demo"].update(n_distinct=80, n_duplicates=27, n_label_conflicts=3, seed=1)
    params["render"]["max_groups"] = 5
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_dvc_repro_end_to_end(repo, dvc_env):
    env = dvc_env
    sh(["git", "init", "-q"], repo, env)
    dvc("init", "-q", cwd=repo, env=env)
    dvc("config", "core.analytics", "false", cwd=repo, env=env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)

    first = dvc("repro", cwd=repo, env=env)
    assert ran_stages(first) == {"fetch", "embed@efficientnet-lite0-224", "cluster@efficientnet-lite0-224",
                                 "evaluate", "render"}
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    run = metrics["efficientnet-lite0_224"]
    assert metrics["dataset"] == {"n_images": 107, "n_skipped": 2, "n_planted": 27}
    assert run["n_embedded"] == 107 and run["n_skipped"] == 0
    assert run["recall"] >= 0.9 and run["precision"] >= 0.9, run
    assert run["n_label_conflicts"] >= 1
    assert list((repo / "reports" / "plots" / "eps").glob("*.csv"))
    groups_dir = repo / "reports" / "groups"
    assert list((groups_dir / "efficientnet-lite0_224").glob("*.png"))
    assert "conflict_group" in (groups_dir / "label_conflicts.csv").read_text()

    # Nothing changed: nothing reruns.
    second = dvc("repro", cwd=repo, env=env)
    assert ran_stages(second) == set(), second
    embedding = repo / "data" / "embeddings" / "efficientnet-lite0_224.npz"
    stamp = embedding.stat().st_mtime_ns

    # Only cluster params change: cluster, evaluate and render rerun, embed does not.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["cluster"]["eps"] = [0.05, 0.1, 0.3]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc("repro", cwd=repo, env=env)
    assert ran_stages(third) == {"cluster@efficientnet-lite0-224", "evaluate", "render"}, third
    assert embedding.stat().st_mtime_ns == stamp
    sweep = (repo / "reports" / "plots" / "eps" / "efficientnet-lite0_224.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in sweep[1:]] == ["0.05", "0.1", "0.3"]

    # A new size embeds only the new (model, size) pair.
    params["embed"]["sizes"] = [224, 128]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    fourth = dvc("repro", cwd=repo, env=env)
    assert ran_stages(fourth) == {"embed@efficientnet-lite0-128", "cluster@efficientnet-lite0-128", "evaluate",
                                  "render"}, fourth
    assert embedding.stat().st_mtime_ns == stamp
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert {"efficientnet-lite0_224", "efficientnet-lite0_128"} <= set(metrics)

    # Metrics and plots are readable by DVC's own commands.
    shown = json.loads(dvc("metrics", "show", "--json", cwd=repo, env=env))
    assert "efficientnet-lite0_224" in json.dumps(shown)
    plots = json.loads(dvc("plots", "show", "--json", "--split", cwd=repo, env=env))
    assert not plots.get("errors"), plots.get("errors")
    assert sorted(plots["data"]) == ["reports/plots/eps/efficientnet-lite0_128.csv",
                                     "reports/plots/eps/efficientnet-lite0_224.csv"]


def test_dvc_repro_on_a_user_folder(tmp_path, dvc_env, photos):
    """fetch.source=folder with a Kaggle-style labels CSV and label map; no ground truth."""
    from conftest import save

    env = dvc_env
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in COPIED:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, repo / name)
    images = tmp_path / "cassava" / "train_images"
    for name, array in photos.items():
        save(array, images / f"{name}.jpg", quality=90)
    save(photos["coffee"][::2, ::2], images / "coffee_small.jpg", quality=70)  # a duplicate with another label
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    labels = "image_id,label\n" + "".join(f"{n}.jpg,{i % 3}\n" for i, n in enumerate(photos)) + "coffee_small.jpg,2\n"
    (tmp_path / "cassava" / "train.csv").write_text(labels)
    (tmp_path / "cassava" / "label_num_to_disease_map.json").write_text('{"0": "healthy", "1": "CBB", "2": "CMD"}')
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fetch"].update(source="folder", input=str(tmp_path / "cassava"))
    params["fetch"]["folder"].update(images="train_images", labels_csv="train.csv",
                                     label_map="label_num_to_disease_map.json")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], repo, env)
    dvc("init", "-q", cwd=repo, env=env)
    dvc("repro", cwd=repo, env=env)

    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert metrics["dataset"] == {"n_images": 7, "n_skipped": 1, "n_planted": 0}
    run = metrics["efficientnet-lite0_224"]
    assert "precision" not in run and run["eps"] == params["evaluate"]["fallback_eps"]
    skipped = (repo / "data" / "dataset" / "skipped.csv").read_text()
    assert "broken.jpg" in skipped and "truncated" in skipped
    conflicts = (repo / "reports" / "groups" / "label_conflicts.csv").read_text()
    assert "coffee.jpg" in conflicts and "coffee_small.jpg" in conflicts and "CMD" in conflicts
