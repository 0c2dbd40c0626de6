"""The one-call API, the `neardup` command and the notebook example, against the real pipeline.

One small demo goes through a real `dvc repro`; its images folder is then given to
`neardup.find_duplicates`, to `python -m neardup find` and to `examples/kaggle_cassava.py`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO
from test_pipeline import copy_project, dvc, init_repo

from neardup.layout import Layout

RUN = "efficientnet-lite0_auto"
SMALL_DEMO = dict(n_distinct=40, n_duplicates=12, n_label_conflicts=2, seed=3, n_test=8, n_cross=4)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A real `dvc repro` of a small demo; returns the repo, its params and a labels CSV of its images."""
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "HOME": str(home), "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
           "DVC_SITE_CACHE_DIR": str(home / "site"), "DVC_GLOBAL_CONFIG_DIR": str(home / "global"),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    repo = tmp_path_factory.mktemp("api-repo")
    copy_project(repo)
    (repo / "data" / "raw").mkdir(parents=True)
    (repo / "data" / "raw" / ".gitkeep").touch()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["fetch"]["demo"].update(SMALL_DEMO)
    params["plant"]["n"] = 10
    params["hash"]["methods"] = ["dhash"]
    params["render"].update(max_groups=3, max_pair_figures=3)
    params["cache"]["dir"] = str(tmp_path_factory.mktemp("cache"))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    init_repo(repo, env)
    dvc("repro", cwd=repo, env=env)
    manifest = pd.read_csv(repo / "data" / "dataset" / "manifest.csv", dtype=str, keep_default_na=False)
    labels = repo / "data" / "dataset" / "labels.csv"  # beside the images folder, as Kaggle's train.csv
    manifest.rename(columns={"id": "image_id"})[["image_id", "label"]].to_csv(labels, index=False)
    work = tmp_path_factory.mktemp("work")  # one working folder: the command and the example share its cache
    return {"repo": repo, "params": params, "labels": labels, "images": repo / "data" / "dataset" / "images",
            "env": env, "work": work}


def test_the_api_gives_the_pipelines_groups(demo, tmp_path):
    import neardup

    params = demo["params"]
    result = neardup.find_duplicates(demo["images"], labels=demo["labels"], out=tmp_path / "out",
                                     **{g: params[g] for g in ("plant", "embed", "hash", "cluster", "evaluate", "act",
                                                               "render", "cache")})
    # the same stage functions as the pipeline's cluster stage: the same groups at every eps, the same pairs
    ours, theirs = Layout.at(tmp_path / "out").clusters(RUN), Layout.of_project(demo["repo"]).clusters(RUN)
    assert ours == tmp_path / "out" / "data" / "clusters" / RUN  # the output folder has the project's layout
    for name in ("groups.csv", "pairs.csv", "planted.csv"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    # the demo's ground truth is the pipeline's only extra: without it the eps comes from the planted copies
    assert result.reason.startswith("most planted copies found")
    assert result.variant == RUN and len(result.groups) and set(result.groups["eps"]) == {result.eps}
    assert (result.pairs["distance"] <= result.eps + 1e-9).all() and result.pairs["distance"].is_monotonic_increasing
    grouped = set(result.groups["id"])
    assert set(result.keep["id"]) | set(result.remove["id"]) == grouped and result.keep["group"].is_unique
    reports = tmp_path / "out" / "reports"  # act ran as in a project: the lists, the folds, the primary block
    assert pd.read_csv(reports / "folds.csv")["fold"].nunique() == params["act"]["n_splits"]
    assert (reports / "primary" / "metrics.json").is_file() and (tmp_path / "out" / "params.yaml").is_file()
    assert (tmp_path / "out" / ".neardup-output").is_file()  # a later scan of a folder holding it skips it
    folds = result.folds(3)
    assert len(folds) == len(result.manifest) and (folds[folds["group"] >= 0].groupby("group")["fold"].nunique() == 1).all()
    # without arguments the folds follow the act params the result was found with
    from dataclasses import replace as with_params

    assert result.folds()["fold"].nunique() == params["act"]["n_splits"]
    other = with_params(result, params={**result.params, "act": {**result.params["act"], "n_splits": 4, "seed": 3}})
    assert other.folds().equals(result.folds(4, seed=3)) and other.folds()["fold"].nunique() == 4
    page = result.report(tmp_path / "report.html")
    assert page.is_file() and "http://" not in page.read_text() and "data:image/jpeg;base64," in page.read_text()
    shown = result.show(2)
    assert shown._repr_html_().count("<img ") >= 4 and "2 of" in str(shown)
    assert "groups" in repr(result) and str(tmp_path / "out") in repr(result)


def test_find_reads_split_folders_as_sets_and_acts_on_leakage(demo, tmp_path, caplog):
    """A folder with `train/` and `Test/` (any case): two sets, the copies across them counted as leakage,
    each group's keeper taken from `act.prefer_set`, labels given by paths relative to the folder."""
    import logging

    import neardup
    from neardup.contract import UserError
    from neardup.fetch.inputs import fetch_params
    from neardup.params import default_params

    manifest = pd.read_csv(demo["repo"] / "data" / "dataset" / "manifest.csv", dtype=str, keep_default_na=False)
    manifest["name"] = manifest["id"].str.replace("/", "__")
    source = {row.name: demo["repo"] / row.path for row in manifest.itertuples()}
    folder = tmp_path / "dataset"
    for name in ("train", "Test"):
        (folder / name).mkdir(parents=True)
    for name, path in source.items():
        shutil.copy(path, folder / "train" / name)
    for name in sorted(source)[:5]:  # the same pictures in the test split, renamed
        shutil.copy(source[name], folder / "Test" / f"t_{name}")
    (folder / "notes.txt").write_text("not in a split\n")
    labels = folder / "labels.csv"
    pd.DataFrame({"image_id": "train/" + manifest["name"], "label": manifest["label"]}).to_csv(labels, index=False)
    params = {g: demo["params"][g] for g in ("plant", "embed", "hash", "cluster", "evaluate", "render", "cache")}
    with caplog.at_level(logging.WARNING, logger="neardup"):
        result = neardup.find_duplicates(folder, labels=labels, out=tmp_path / "out", act={"prefer_set": "Test"},
                                         **params)
    assert "1 entries of" in caplog.text and "notes.txt" in caplog.text  # left out, and said so
    assert set(result.manifest["set"]) == {"train", "Test"} and len(result.manifest) == len(manifest) + 5
    train = result.manifest[result.manifest["set"] == "train"]
    expected = manifest.set_index("name").loc[train["id"].str[len("train/"):], "label"].to_numpy()
    assert (train["label"].to_numpy() == expected).all() and (expected != "").any()  # by path under the folder
    assert result.metrics["n_cross_set_groups"] >= 5 and result.metrics["overlap"]["Test"]["train"] >= 5
    remove = result.remove
    crossing = remove[remove["keeper_set"] != remove["set"]]
    assert len(crossing) >= 5 and (crossing["keeper_set"] == "Test").all()  # the test image kept, train's removed
    with pytest.raises(UserError, match="prefer_set 'val' is not a set"):
        neardup.find_duplicates(folder, out=tmp_path / "bad", act={"prefer_set": "val"})
    one = default_params()
    assert fetch_params(folder, None, Layout.at(tmp_path / "x"), one, splits=False) is None
    assert one["fetch"]["sets"] == [] and one["fetch"]["input"] == str(folder.resolve())


def test_the_api_rejects_bad_params_and_inputs_in_one_line(tmp_path, demo):
    import neardup
    from neardup.contract import UserError

    with pytest.raises(UserError, match=r"cluster\.eps"):
        neardup.find_duplicates(demo["images"], out=tmp_path / "a", cluster={"eps": ["abc"]})
    # a nested group merges into the defaults: only the param given is checked against them
    with pytest.raises(UserError, match=r"^cluster\.verify\.factor must lie in \(0, 1\], got 2"):
        neardup.find_duplicates(demo["images"], out=tmp_path / "a", cluster={"verify": {"factor": 2}})
    with pytest.raises(UserError, match="unknown params group 'fetch'"):
        neardup.find_duplicates(demo["images"], out=tmp_path / "b", fetch={"source": "demo"})
    with pytest.raises(UserError, match="not a folder"):
        neardup.find_duplicates(tmp_path / "missing", out=tmp_path / "c")


def neardup_cmd(*args, cwd, env, input=None):
    return subprocess.run([sys.executable, "-m", "neardup", *args], cwd=cwd, env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=900, input=input)


def test_the_command_finds_duplicates_in_a_folder(demo, tmp_path):
    out, here = tmp_path / "out", tmp_path / "here"
    here.mkdir()
    proc = neardup_cmd("-q", "find", str(demo["images"]), "--labels", str(demo["labels"]), "--plant", "10",
                       "--out", str(out), cwd=here, env=demo["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    # nothing lands where the command was run: the steps' timings go to the output folder
    assert not any(here.iterdir())
    timings = [json.loads(line) for line in (out / "logs" / "timings.jsonl").read_text().splitlines()]
    assert {t["stage"] for t in timings} == {"embed", "hash"}
    assert "duplicate groups" in proc.stdout and "images to remove" in proc.stdout
    for name in ("reports/keep.csv", "reports/remove.csv", "reports/folds.csv", "reports/index.html",
                 f"data/evaluation/{RUN}/groups.csv", f"data/evaluation/{RUN}/queue.csv", f"reports/metrics/{RUN}.json",
                 "data/dataset/skipped.csv"):
        assert (out / name).is_file(), name
        assert str(out / name) in proc.stdout or name.startswith(("reports/metrics", "data/dataset")), name
    assert "broken" in (out / "data" / "dataset" / "skipped.csv").read_text()  # the demo's broken files, accounted for
    # user errors: one line, exit code 2, no traceback
    for args in (["find", str(tmp_path / "nope")], ["find", str(demo["images"]), "--labels", str(tmp_path / "x.csv")],
                 ["report"]):
        bad = neardup_cmd(*args, cwd=tmp_path, env=demo["env"])
        lines = [line for line in bad.stderr.splitlines() if "error" in line.lower()]
        assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(lines) == 1, (args, bad.stderr[-2000:])
    assert neardup_cmd("find", "--help", cwd=tmp_path, env=demo["env"]).stdout.count("--") >= 6


def test_review_and_report_work_on_a_find_output(demo, tmp_path):
    """A `find` output folder is a project for review and report: verdicts imported there (as the report's
    review view exports them) count on the next `find` with that folder; every message names a command
    that exists there."""
    out = tmp_path / "out"
    find = ("-q", "find", str(demo["images"]), "--labels", str(demo["labels"]), "--plant", "10", "--out", str(out))
    first = neardup_cmd(*find, cwd=demo["work"], env=demo["env"])
    assert first.returncode == 0 and f"cd {out} && neardup review" in first.stdout, first.stderr[-3000:]
    queue = pd.read_csv(out / "data" / "evaluation" / RUN / "queue.csv", dtype=str, keep_default_na=False)
    assert len(queue) >= 2
    exported = tmp_path / "neardup_reviews.csv"
    queue.head(2).assign(verdict=["duplicate", "different"]).rename(columns={"a": "id_a", "b": "id_b"})[
        ["sha_a", "sha_b", "verdict", "id_a", "id_b"]].to_csv(exported, index=False)
    imported = neardup_cmd("review", "--import", str(exported), cwd=out, env=demo["env"])
    assert imported.returncode == 0 and "imported 2 verdict(s)" in imported.stdout, imported.stderr[-2000:]
    assert f"neardup find FOLDER --out {out}" in imported.stdout and "dvc repro" not in imported.stdout
    page = (out / "reports" / "index.html").read_text()
    assert "neardup review --import FILE" in page and "python -m neardup.review" not in page and "dvc repro" not in page
    assert "keypoints agree" in page and "the proof of a copy" in page  # verified pairs show their proof
    from browser import have_chromium, load_page

    if have_chromium():  # the page as a user sees it: the summary first, every image loaded, nothing fetched
        loaded = load_page(out / "reports" / "index.html")
        assert loaded["requests"] == [] and 'data-images-ok="true"' in loaded["dom"], loaded["requests"]
        dom = loaded["dom"]
        assert dom.index('id="summary"') < dom.index("Summary per variant") and "planted copies" in dom
        assert "ground truth, over the eps sweep" not in dom and ">pair precision<" not in dom
    shown = neardup_cmd("report", cwd=out, env=demo["env"])
    assert shown.returncode == 0 and shown.stdout.strip().endswith("reports/index.html"), shown.stderr[-2000:]
    rebuild = neardup_cmd("report", "--rebuild", cwd=out, env=demo["env"])
    assert rebuild.returncode == 2 and "run the same `neardup find` again" in rebuild.stderr
    review = neardup_cmd("review", cwd=out, env=demo["env"], input="q\n")
    assert review.returncode == 0 and "pair(s) to review" in review.stdout, review.stderr[-2000:]
    assert "usage: neardup review" in neardup_cmd("review", "--help", cwd=out, env=demo["env"]).stdout
    before = json.loads((out / "reports" / "metrics" / f"{RUN}.json").read_text())
    assert before["n_duplicate"] == before["n_different"] == 0
    again = neardup_cmd(*find, cwd=demo["work"], env=demo["env"])
    assert again.returncode == 0, again.stderr[-3000:]
    after = json.loads((out / "reports" / "metrics" / f"{RUN}.json").read_text())
    assert after["n_duplicate"] == 1 and after["n_different"] == 1  # the verdicts, counted by the next find


def test_the_command_says_its_version_and_acts_at_a_given_eps(demo, tmp_path):
    version = neardup_cmd("--version", cwd=tmp_path, env=demo["env"])
    assert version.returncode == 0 and version.stdout.startswith("neardup ") and "unknown" not in version.stdout
    out = tmp_path / "out"
    strict = neardup_cmd("-q", "find", str(demo["images"]), "--plant", "10", "--eps", "0.05", "--out", str(out),
                         cwd=demo["work"], env=demo["env"])
    assert strict.returncode == 0 and "eps 0.05:" in strict.stdout, strict.stderr[-3000:]
    # quiet: TensorFlow's native start-up notices (oneDNN, absl, XNNPACK) kept off stderr
    assert not any(n in strict.stderr for n in ("oneDNN", "absl::InitializeLog", "XNNPACK", "trackable_obj"))
    assert json.loads((out / "reports" / "metrics" / f"{RUN}.json").read_text())["eps"] == 0.05


def test_the_command_reports_and_reviews_in_a_project(demo):
    env = demo["env"]
    shown = neardup_cmd("report", cwd=demo["repo"], env=env)
    assert shown.returncode == 0 and shown.stdout.strip().endswith("reports/index.html")
    review = subprocess.run([sys.executable, "-m", "neardup", "review"], cwd=demo["repo"], input="q\n",
                            env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert review.returncode == 0 and "pair(s) to review" in review.stdout, review.stderr[-2000:]


def test_the_notebook_example_runs_on_the_demo(demo, tmp_path):
    out = tmp_path / "example"
    env = {**demo["env"], "PYTHONPATH": str(REPO), "NEARDUP_IMAGES": str(demo["images"]),
           "NEARDUP_LABELS": str(demo["labels"]), "NEARDUP_OUT": str(out), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "kaggle_cassava.py")], cwd=demo["work"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clean = pd.read_csv(out / "train_clean.csv", dtype=str)
    removed = pd.read_csv(out / "reports" / "remove.csv", dtype=str)
    labels = pd.read_csv(demo["labels"], dtype=str)
    assert len(clean) == len(labels) - len(set(removed["id"]) & set(labels["image_id"])) and len(removed)
    folds = pd.read_csv(out / "reports" / "folds.csv")
    assert folds["fold"].nunique() == 5 and (out / "reports" / "index.html").is_file()
    assert "duplicates; folds:" in proc.stdout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """A fresh venv with neardup installed from a wheel built from this checkout's package files (copied
    out, so the build writes nothing here). Its third-party dependencies come from this environment
    through a ``.pth`` line (nothing is downloaded); this checkout is not on its path."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO / "neardup", src / "neardup", ignore=shutil.ignore_patterns("__pycache__"))  # links followed
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    quiet = {"check": True, "capture_output": True, "timeout": 600}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(work),
                    str(src)], **quiet)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], **quiet)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(next(work.glob("neardup-*.whl")))], **quiet)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          **{**quiet, "text": True}).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_init_makes_a_project_that_runs_the_installed_pipeline(demo, tmp_path, wheel_venv):
    """`neardup init` from a wheel installed in a fresh venv, around the demo's images: a real `dvc repro`
    there runs the installed package's stage functions (`neardup stage NAME`) and gives the demo repo's groups."""
    env = {k: v for k, v in demo["env"].items() if k != "PYTHONPATH"}
    env["PATH"] = str(wheel_venv / "bin") + os.pathsep + env["PATH"]
    installed = subprocess.run(["python", "-c", "import neardup; print(neardup.__file__)"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=60).stdout
    assert installed.startswith(str(wheel_venv)), installed  # the wheel's copy, not this checkout

    def neardup_installed(*args):
        return subprocess.run(["neardup", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    project = tmp_path / "project"
    made = neardup_installed("init", str(project), "--images", str(demo["images"]), "--labels", str(demo["labels"]))
    assert made.returncode == 0 and "dvc repro" in made.stdout, made.stderr[-2000:]
    dvc_yaml = (project / "dvc.yaml").read_text()
    assert "cmd: neardup stage fetch\n" in dvc_yaml and "${paths.code_check}" in dvc_yaml
    # portable: no path outside the project (the installed package is one digest file), no runner copied in
    assert str(tmp_path) not in dvc_yaml and "site-packages" not in dvc_yaml and "neardup/" not in dvc_yaml
    assert "stages/" not in dvc_yaml and not (project / "stages").exists()
    config = (project / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "html_template = plots_template.html" in config
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["fetch"]["source"] == "folder" and params["fetch"]["input"] == str(demo["images"].parent)
    for group in ("plant", "hash", "render", "cache"):  # the demo repo's small settings
        params[group] = demo["params"][group]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    again = neardup_installed("init", str(project), "--images", str(demo["images"]))
    assert again.returncode == 2 and "--force" in again.stderr  # never overwrites a project silently
    assert "usage: neardup stage embed" in neardup_installed("stage", "embed", "--help").stdout

    def repro():
        proc = subprocess.run(["python", "-m", "dvc", "repro"], cwd=project, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        return proc.stdout

    assert "> neardup stage embed --model efficientnet-lite0 --size auto" in repro()
    ours, theirs = Layout.of_project(project).clusters(RUN), Layout.of_project(demo["repo"]).clusters(RUN)
    assert (ours / "groups.csv").read_bytes() == (theirs / "groups.csv").read_bytes()
    assert (project / "reports" / "index.html").is_file() and (project / "reports" / "primary" / "metrics.json").is_file()
    assert "Running stage" not in repro().replace("Running stage 'fetch_input'", "")
    assert (project / "data" / "neardup_code.txt").read_text().startswith("neardup 0.")  # the code's digest

    def run(*args, cwd=project):
        proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        return proc.stdout

    # experiments compare on data without a ground truth: the README's `exp show` shows planted recall
    run("git", "add", "-A")
    run("git", "commit", "-qm", "neardup init")
    from test_pipeline import readme_exp_show

    table = run("python", "-m", "dvc", *readme_exp_show(), "--no-pager", "--json")
    found = json.dumps(table)
    assert "planted_recall" in found and "n_to_remove" in found, table[:2000]
    primary = json.loads((project / "reports" / "primary" / "metrics.json").read_text())["primary"]
    assert primary["planted_recall"] > 0.5 and primary["n_to_remove"] >= 1
    page = run("python", "-m", "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    assert "cdn.jsdelivr" not in (tmp_path / "plots" / "index.html").read_text(), page  # drawn offline
    # the project moves: copied to another folder, nothing reruns there
    moved = tmp_path / "elsewhere" / "project"
    shutil.copytree(project, moved, symlinks=True)
    again = run("python", "-m", "dvc", "repro", cwd=moved)
    assert "Running stage" not in again.replace("Running stage 'fetch_input'", ""), again
