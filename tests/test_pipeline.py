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

COPIED = ["dvc.yaml", "params.yaml", "stages", "neardup", ".gitignore", "data/reviewed_pairs.csv"]


def copy_project(dest):
    """The files a user's clone has (what DVC stages need), into ``dest``."""
    for name in COPIED:
        src = REPO / name
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)


def init_repo(repo, env):
    """git + dvc init, with the project's DVC config (offline plots template) as a clone has it."""
    sh(["git", "init", "-q"], repo, env)
    dvc("init", "-q", cwd=repo, env=env)
    for name in ("config", "plots_template.html"):
        shutil.copy(REPO / ".dvc" / name, repo / ".dvc" / name)


def sh(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def dvc(*args, cwd, env):
    return sh([sys.executable, "-m", "dvc", *args], cwd, env)


def ran_stages(output: str) -> set[str]:
    """The stages a `dvc repro` ran, but fetch_input: it is `always_changed` (checks fetch.input for entries
    DVC cannot hash) and runs every time; the assertion here makes sure of that."""
    ran = set(re.findall(r"Running stage '([^']+)'", output))
    assert "fetch_input" in ran, output
    return ran - {"fetch_input"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("repo")
    copy_project(path)
    (path / "data" / "raw").mkdir(parents=True)
    (path / "data" / "raw" / ".gitkeep").touch()
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["fetch"]["demo"].update(n_distinct=80, n_duplicates=27, n_label_conflicts=3, seed=1, n_test=12, n_cross=6)
    params["render"].update(max_groups=5, max_pair_figures=10)
    params["plant"]["n"] = 18
    params["hash"]["methods"] = ["dhash"]
    params["cache"]["dir"] = str(tmp_path_factory.mktemp("content-cache"))  # shared with the clone below
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def metrics_of(repo, run):
    return json.loads((repo / "reports" / "metrics" / f"{run}.json").read_text())


def check_lists_to_act_on(repo, eps):
    """keep/remove cover every group at the chosen eps exactly once; no group spans two folds."""
    import pandas as pd

    groups = pd.read_csv(repo / "data" / "clusters" / "efficientnet-lite0_auto" / "groups.csv")
    at = groups[(groups["eps"] - eps).abs() < 1e-9]
    keep, remove = pd.read_csv(repo / "reports" / "keep.csv"), pd.read_csv(repo / "reports" / "remove.csv")
    assert keep["group"].is_unique and set(keep["group"]) == set(at["group"]) and len(keep)
    assert sorted(keep["id"].tolist() + remove["id"].tolist()) == sorted(at["id"].tolist())
    folds = pd.read_csv(repo / "reports" / "folds.csv")
    manifest = pd.read_csv(repo / "data" / "dataset" / "manifest.csv")
    assert sorted(folds["id"]) == sorted(manifest["id"]) and folds["fold"].nunique() == 5
    assert (folds[folds["group"] >= 0].groupby("group")["fold"].nunique() == 1).all()


def check_html_report(page):
    """Self-contained: no remote reference; in Chromium every image loads and nothing is requested."""
    from browser import have_chromium, load_page

    text = page.read_text()
    assert "The chosen eps and why" in text and "<td>**chosen**</td>" not in text and "<td>chosen</td>" in text
    assert "http://" not in text and "https://" not in text and text.count("data:image/jpeg;base64,") >= 5
    if have_chromium():
        loaded = load_page(page)
        assert loaded["requests"] == [] and 'data-images-ok="true"' in loaded["dom"], loaded["requests"]


def check_fresh_clone_is_clean(repo, env, tmp_path):
    """Committed outputs are what a fresh clone's `dvc repro` makes: git status stays clean."""
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "outputs"], repo, env)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    dvc("repro", cwd=clone, env=env)
    assert sh(["git", "status", "--porcelain"], clone, env) == ""


def test_dvc_repro_end_to_end(repo, dvc_env, tmp_path):
    env = dvc_env
    init_repo(repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)

    params = yaml.safe_load((repo / "params.yaml").read_text())
    first = dvc("repro", cwd=repo, env=env)
    lite, dhash = "efficientnet-lite0-auto", "dhash"
    assert ran_stages(first) == {"fetch", "plant", f"embed@{lite}", f"embed_plants@{lite}", f"hash@{dhash}",
                                 f"cluster@{lite}", f"cluster_hash@{dhash}", f"evaluate@{lite}",
                                 f"evaluate_hash@{dhash}", "act", "render"}
    run = metrics_of(repo, "efficientnet-lite0_auto")
    assert run["dataset"] == {"n_images": 125, "n_skipped": 2, "n_truth_copies": 33, "n_planted": 18}
    assert run["n_embedded"] == 125 and run["n_skipped"] == 0
    # the 6 copies of train images planted into the test set land in the overlap matrix's test -> train cell
    assert run["overlap"]["test"]["train"] >= 5, run["overlap"]
    assert run["input_size"] == 224  # size auto: demo photos are larger than Lite0's native 224
    assert 0 < run["pair_f1"] <= 1 and 0 < run["pair_precision"] <= 1
    assert run["f1"] >= 0.9 and min(run["recall"], run["precision"]) >= 0.85, run  # demo now with a test set
    assert run["ap"] > metrics_of(repo, "dhash")["ap"], (run["ap"], metrics_of(repo, "dhash")["ap"])
    assert set(metrics_of(repo, "dhash")) <= set(run)  # every run writes the same metric names
    assert run["n_label_conflicts"] >= 1 and 0 < run["planted_recall"] <= 1
    assert set(run["planted"]) <= set(params["plant"]["transforms"])
    assert run["n_pending"] == run["n_pairs"] - run["n_duplicate"]  # nothing reviewed yet
    clusters = repo / "data" / "clusters"
    verify = json.loads((clusters / "efficientnet-lite0_auto" / "stats.json").read_text())["verify"]
    assert verify["pairs"] > 0 and verify["verified"] >= 1 and verify["too_small"] == 0, verify  # copies proven
    assert "verify" not in json.loads((clusters / "dhash" / "stats.json").read_text())  # baselines as they are
    groups_dir = repo / "reports" / "groups"
    assert list((groups_dir / "efficientnet-lite0_auto").glob("*.png"))
    assert "conflict_group" in (groups_dir / "label_conflicts.csv").read_text()
    assert (repo / "reports" / "quality.md").read_text().count("efficientnet-lite0_auto") >= 2
    assert len(list((repo / "reports" / "review").rglob("*.png"))) == 10
    # Planted copies never reach a reported list.
    for reported in [*(repo / "data" / "clusters").rglob("groups.csv"), *(repo / "data" / "clusters").rglob("pairs.csv"),
                     *(repo / "data" / "evaluation").rglob("*.csv"), groups_dir / "label_conflicts.csv"]:
        assert "planted/" not in reported.read_text(), reported
    # No timings in outputs (they go to logs/, which git ignores); floats in tracked tables are rounded.
    assert "images_per_second" not in json.dumps(run) and (repo / "logs" / "timings.jsonl").is_file()
    timings = [json.loads(line) for line in (repo / "logs" / "timings.jsonl").read_text().splitlines()]
    steps = [t for t in timings if t.get("step") != "stage"]
    assert {t["runtime"] for t in steps if t["stage"] == "embed"} == {"tflite"}  # the CPU default, logged
    # every stage that ran logged its wall time, CPU time and peak memory
    ran = {(t["stage"], t["variant"]) for t in timings if t.get("step") == "stage" and t["peak_mb"] > 50}
    assert {"fetch", "plant", "embed", "hash", "cluster", "evaluate", "act", "render"} <= {s for s, _ in ran}
    assert ("cluster", "efficientnet-lite0_auto") in ran
    sweep = (repo / "reports" / "plots" / "eps" / "efficientnet-lite0_auto.csv").read_text()
    assert max(len(v.replace(".", "").lstrip("0")) for v in re.findall(r"\d+\.\d+", sweep)) <= 6  # digits
    check_lists_to_act_on(repo, run["eps"])
    primary = json.loads((repo / "reports" / "primary" / "metrics.json").read_text())["primary"]
    assert primary["variant"] == "efficientnet-lite0_auto" and primary["ap"] == run["ap"] and primary["planted"] == run["planted"]
    reason = (repo / "data" / "evaluation" / "efficientnet-lite0_auto" / "reason.txt").read_text()
    assert reason.count("**chosen**") == 1 and reason.count("\n| ") == len(params["cluster"]["eps"]) + 1
    check_html_report(repo / "reports" / "index.html")
    check_fresh_clone_is_clean(repo, env, tmp_path)

    # Nothing changed: nothing reruns.
    second = dvc("repro", cwd=repo, env=env)
    assert ran_stages(second) == set(), second
    # one pipeline only (no dvc.yaml inside the package), and nothing stale but the always-run input check
    status = dvc("status", cwd=repo, env=env)
    assert re.findall(r"(?m)^(\S[^\n]*):\s*$", status) == ["fetch_input"], status

    # Embedding, hashing and the pair search again on Dask workers (2 worker processes), from an empty
    # cache: the same bytes in every output, so the same dvc.lock.
    lock = (repo / "dvc.lock").read_text()
    on_dask = {**params, "engine": {"kind": "dask", "address": "local:2", "shard_size": 32},
               "cache": {"dir": str(tmp_path / "dask-cache")}}
    (repo / "params.yaml").write_text(yaml.safe_dump(on_dask, sort_keys=False))
    log = dvc("repro", "-f", "-s", f"embed@{lite}", f"embed_plants@{lite}", f"hash@{dhash}", f"cluster@{lite}",
              f"cluster_hash@{dhash}", cwd=repo, env=env)
    assert "embedding: 125 items in 4 shards on 2 Dask workers" in log and "18 items in 1 shards" in log, log[-2000:]
    assert "hash dhash: 125 items in 4 shards" in log and log.count("pair search on 2 Dask workers") == 2, log[-2000:]
    assert (repo / "dvc.lock").read_text() == lock  # engine and cache.dir are not results
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    embedding = repo / "data" / "embeddings" / "efficientnet-lite0_auto.npz"
    stamp = embedding.stat().st_mtime_ns

    # Only cluster params change: clustering and what follows rerun, embedding does not. (The
    # approximate search visits all 3 cells of this small index, so its measured recall is 1.)
    params["cluster"]["eps"] = [0.3, 0.5, 0.7]
    params["cluster"]["search"] = "approximate"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc("repro", cwd=repo, env=env)
    assert ran_stages(third) == {f"cluster@{lite}", f"cluster_hash@{dhash}", f"evaluate@{lite}",
                                 f"evaluate_hash@{dhash}", "act", "render"}, third
    assert embedding.stat().st_mtime_ns == stamp
    sweep = (repo / "reports" / "plots" / "eps" / "efficientnet-lite0_auto.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in sweep[1:]] == ["0.3", "0.5", "0.7"]
    run = metrics_of(repo, "efficientnet-lite0_auto")
    assert run["search"] == "approximate" and run["search_recall"] == 1.0

    # Other planted copies: the plants are re-made and re-embedded, the real images are not.
    params["plant"]["seed"] = 7
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    fourth = dvc("repro", cwd=repo, env=env)
    assert f"embed@{lite}" not in ran_stages(fourth) and {"plant", f"embed_plants@{lite}"} <= ran_stages(fourth)
    assert embedding.stat().st_mtime_ns == stamp

    # Verdicts, keyed by content hash, count for every run proposing the same pair.
    import pandas as pd

    queues = [pd.read_csv(repo / "data" / "evaluation" / r / "queue.csv", dtype=str, keep_default_na=False)
              for r in ("efficientnet-lite0_auto", dhash)]
    shared = queues[0].merge(queues[1][["sha_a", "sha_b"]], on=["sha_a", "sha_b"]).drop_duplicates(["sha_a", "sha_b"])
    assert len(shared) >= 2
    verdicts = shared.head(2).assign(verdict=["duplicate", "different"], id_a=shared["a"], id_b=shared["b"])
    verdicts[["sha_a", "sha_b", "verdict", "id_a", "id_b"]].to_csv(repo / "data" / "reviewed_pairs.csv", index=False)
    fifth = dvc("repro", cwd=repo, env=env)
    # act reruns too: the primary run's metrics (reports/primary/) now count the verdicts
    assert ran_stages(fifth) == {f"evaluate@{lite}", f"evaluate_hash@{dhash}", "act", "render"}, fifth
    for name in ("efficientnet-lite0_auto", dhash):
        counted = metrics_of(repo, name)["n_duplicate"] + metrics_of(repo, name)["n_different"]
        assert counted >= 1 and metrics_of(repo, name)["precision_lower"] <= metrics_of(repo, name)["precision_upper"]

    # A new size embeds only the new (model, size) pair; the primary run (act) stays.
    params["embed"]["sizes"] = ["auto", 128]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sixth = dvc("repro", cwd=repo, env=env)
    small = "efficientnet-lite0-128"
    assert ran_stages(sixth) == {f"embed@{small}", f"embed_plants@{small}", f"cluster@{small}", f"evaluate@{small}",
                                 "render"}, sixth
    assert embedding.stat().st_mtime_ns == stamp
    assert metrics_of(repo, "efficientnet-lite0_128")["input_size"] == 128

    # Metrics and plots are readable by DVC's own commands.
    shown = json.loads(dvc("metrics", "show", "--json", cwd=repo, env=env))
    assert "efficientnet-lite0_auto" in json.dumps(shown)
    plots = json.loads(dvc("plots", "show", "--json", "--split", cwd=repo, env=env))
    assert not plots.get("errors"), plots.get("errors")
    # the two comparison charts, nothing else (no default chart per variant file)
    assert set(plots["data"]) == {"reports/primary/eps.csv", "reports/primary/pr.csv"}, set(plots["data"])
    assert all(len(charts) == 1 for charts in plots["data"].values())
    dvc("plots", "show", "-o", "plots_html", cwd=repo, env=env)
    page = (repo / "plots_html" / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and "vega-embed" in page  # offline template, libraries inlined
    check_experiments_compare(repo, env)


def readme_exp_show() -> list[str]:
    """The narrow `dvc exp show` command the README documents."""
    import shlex

    line = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("dvc exp show --drop"))
    return shlex.split(line.split("  #")[0])[1:]


def check_experiments_compare(repo, env):
    """Two experiments with different primary runs (Lite0 at 128 px vs at auto = 224 px) compare column by
    column: the primary block has the same names, `dvc metrics diff` pairs them, `dvc exp show` (the README's
    narrow command) keeps the Experiment column and fits 120 columns, `dvc plots diff` overlays the curves."""
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "sweep auto + 128"], repo, env)  # HEAD: primary run efficientnet-lite0_auto
    dvc("exp", "run", "-n", "small", "-S", "embed.sizes=[128]", cwd=repo, env=env)
    primary = json.loads((repo / "reports" / "primary" / "metrics.json").read_text())["primary"]
    assert primary["variant"] == "efficientnet-lite0_128" and primary["input_size"] == 128
    diff = json.loads(dvc("metrics", "diff", "--all", "HEAD", "small", "--json", cwd=repo, env=env))
    rows = diff["reports/primary/metrics.json"]
    for key in ("primary.ap", "primary.f1", "primary.eps", "primary.input_size"):
        assert rows[key]["old"] is not None and rows[key]["new"] is not None, (key, rows.get(key))
    assert rows["primary.input_size"] == {"old": 224, "new": 128, "diff": -96}
    table = sh([sys.executable, "-m", "dvc", *readme_exp_show(), "--no-pager"], repo, {**env, "COLUMNS": "120"})
    lines = [line for line in table.splitlines() if line.strip()]
    assert "Experiment" in lines[1] and "primary.ap" in lines[1] and "embed.sizes" in lines[1], table
    assert "primary.planted_recall" in lines[1] and "primary.n_to_remove" in lines[1], table  # without a truth too
    assert any("small" in line and "[128]" in line for line in lines), table
    assert max(len(line.rstrip()) for line in lines) <= 120 and "…" not in table, table  # nothing cut off
    plots = json.loads(dvc("plots", "diff", "HEAD", "small", "--json", "--split", cwd=repo, env=env))
    charts = plots["data"]["reports/primary/eps.csv"]
    assert len(charts) == 1 and charts[0]["revisions"] == ["HEAD", "small"], charts  # one chart, both curves
    assert set(plots["data"]) == {"reports/primary/eps.csv", "reports/primary/pr.csv"}  # and only the two


def test_dvc_repro_on_user_folders_as_two_sets(tmp_path, dvc_env, photos):
    """fetch.sets: "train 2020 vs 2019" on folders, a Kaggle-style labels CSV and label map; no ground truth."""
    from conftest import save

    env = dvc_env
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_project(repo)
    raw = tmp_path / "raw"
    images = raw / "cassava2020" / "train_images"
    for name, array in photos.items():
        save(array, images / f"{name}.jpg", quality=90)
    save(photos["coffee"][::2, ::2], images / "coffee_small.jpg", quality=70)  # a duplicate with another label
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    labels = "image_id,label\n" + "".join(f"{n}.jpg,{i % 3}\n" for i, n in enumerate(photos)) + "coffee_small.jpg,2\n"
    (raw / "cassava2020" / "train.csv").write_text(labels)
    (raw / "cassava2020" / "label_num_to_disease_map.json").write_text('{"0": "healthy", "1": "CBB", "2": "CMD"}')
    save(photos["chelsea"][10:, 10:], raw / "cassava2019" / "train" / "cat.jpg", quality=80)  # in 2020 too
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fetch"].update(input=str(raw), sets=[
        {"name": "train2020", "source": "folder", "input": str(raw / "cassava2020"),
         "folder": {"images": "train_images", "labels_csv": "train.csv", "label_map": "label_num_to_disease_map.json"}},
        {"name": "train2019", "source": "folder", "input": str(raw / "cassava2019"), "folder": {"images": "train"}}])
    params["hash"]["methods"] = ["dhash"]
    params["render"]["max_pair_figures"] = 5
    params["act"]["n_splits"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    init_repo(repo, env)
    before = {p: p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    dvc("repro", cwd=repo, env=env)

    # Planted copies live in the pipeline's own folder; the user's data is untouched.
    assert {p: p.read_bytes() for p in raw.rglob("*") if p.is_file()} == before
    run = metrics_of(repo, "efficientnet-lite0_auto")
    assert run["dataset"] == {"n_images": 8, "n_skipped": 1, "n_truth_copies": 0, "n_planted": 8}
    assert "precision" not in run and "ap" not in run and 0 <= run["planted_recall"] <= 1
    reason = (repo / "data" / "evaluation" / "efficientnet-lite0_auto" / "reason.txt").read_text()
    assert run["planted_with_unrelated"] <= params["evaluate"]["max_unrelated"] or "smallest" in reason.splitlines()[0]
    assert run["grouped_share"] <= params["evaluate"]["max_grouped_share"] and run["largest_group"] <= 5
    assert run["overlap"]["train2019"]["train2020"] == 1 and run["overlap"]["train2020"]["train2019"] == 1
    skipped = (repo / "data" / "dataset" / "skipped.csv").read_text()
    assert "broken.jpg" in skipped and "truncated" in skipped
    conflicts = (repo / "reports" / "groups" / "label_conflicts.csv").read_text()
    assert "train2020/coffee.jpg" in conflicts and "train2020/coffee_small.jpg" in conflicts and "CMD" in conflicts
    assert "train2019/cat.jpg" in (repo / "reports" / "remove.csv").read_text() + (repo / "reports" / "keep.csv").read_text()
