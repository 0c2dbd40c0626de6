"""Hostile but realistic input (issue 24): nothing lost, nothing raw. A repeated eps or list entry is an
error naming the param; labels mean the same through every entry point; odd file names are drawn as
they are spelt; a full disk, an interrupt and bad API arguments end in one line with no temporary file
left; no params value reaches a shell."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO, copy_pipeline, save

sys.path.insert(0, str(REPO / "benchmarks"))

from scenes import make_scenes  # noqa: E402

# ---------------------------------------------------------------- repeated values


@pytest.mark.parametrize("group, key, value, said", [
    ("cluster", "eps", [0.3, 0.3], "cluster.eps lists 0.3 twice"),
    ("cluster", "eps", [0.5, 1, 0.1, 1.0], "cluster.eps lists 1 twice"),
    ("embed", "models", ["efficientnet-lite0", "efficientnet-lite0"], "embed.models lists 'efficientnet-lite0' twice"),
    ("embed", "sizes", [224, 224], "embed.sizes lists 224 twice"),
    ("hash", "methods", ["dhash", "phash", "dhash"], "hash.methods lists 'dhash' twice"),
    ("plant", "transforms", ["jpeg", "jpeg"], "plant.transforms lists 'jpeg' twice"),
])
def test_a_repeated_entry_of_a_list_param_is_an_error_naming_it(group, key, value, said):
    from neardup.params import default_params
    from neardup.params import ParamsError, params_from_dict

    params = default_params()
    params[group][key] = value
    with pytest.raises(ParamsError, match=said):
        params_from_dict(params, group)


def test_the_keeper_is_never_removed_and_labels_mean_one_thing_in_every_form(tmp_path):
    """The issue's case: 12 photos and a byte copy of one. A repeated eps is refused before any work;
    with one eps there is one keeper and one removed copy. Labels given as a dict whose values went
    through a pandas column with a missing value (1.0, NaN) keep their spelling, so the byte-identical
    pair is no label conflict, and None is no label."""
    from neardup.api import find_duplicates
    from neardup.params import ParamsError

    folder = tmp_path / "images"
    folder.mkdir()
    for k, scene in enumerate(make_scenes(tmp_path / "scenes", 12, width=256, height=192, workers=1)):
        shutil.copy(scene, folder / f"v{k:02d}.jpg")
    shutil.copy(folder / "v00.jpg", folder / "v00_copy.jpg")
    with pytest.raises(ParamsError, match="cluster.eps lists 0.3 twice"):
        find_duplicates(folder, out=tmp_path / "twice", cluster={"eps": [0.3, 0.3]})
    assert not (tmp_path / "twice").exists()  # refused before anything was written
    ids = ["v00.jpg", "v00_copy.jpg"] + [f"v{k:02d}.jpg" for k in range(1, 12)]
    labels = pd.Series([1, 1, None, 2] + [3] * 9, index=ids).astype(float).to_dict()  # 1.0, nan, 2.0: a column
    result = find_duplicates(folder, labels, out=tmp_path / "out", cluster={"eps": [0.3]}, plant={"n": 0})
    assert result.groups["id"].tolist() == ["v00.jpg", "v00_copy.jpg"] and set(result.groups["label"]) == {"1"}
    assert result.metrics["n_label_conflicts"] == 0 and result.metrics["n_pairs"] == 1
    names = result.manifest.set_index("id")["label_name"]
    assert names["v01.jpg"] == "" and names["v02.jpg"] == "2" and names["v00.jpg"] == "1"
    assert result.keep["id"].tolist() == ["v00.jpg"] and result.keep["n_members"].tolist() == [2]
    assert result.remove["id"].tolist() == ["v00_copy.jpg"] and result.remove["keeper"].tolist() == ["v00.jpg"]


def test_choose_keepers_refuses_the_groups_of_several_eps_and_checks_its_lists():
    from neardup.act import check_lists, choose_keepers

    manifest = pd.DataFrame({"id": ["a", "b", "c"], "set": ["train"] * 3, "label_name": ["", "", ""],
                             "label": ["", "", ""], "width": [10, 10, 20], "height": [10, 10, 20]})
    one = pd.DataFrame({"group": [0, 0, 0], "id": ["a", "b", "c"]})
    keep, remove = choose_keepers(one, manifest, prefer_set="")
    assert keep["id"].tolist() == ["c"] and sorted(remove["id"]) == ["a", "b"]
    with pytest.raises(ValueError, match="image 'a' is in the groups 2 times"):
        choose_keepers(pd.concat([one, one]), manifest, prefer_set="")
    broken = remove.assign(id=["a", "c"])
    with pytest.raises(RuntimeError, match="a keeper is in the remove list"):
        check_lists(keep, broken)
    with pytest.raises(RuntimeError, match="an id is listed twice"):
        check_lists(keep, remove.assign(id=["a", "a"]))
    with pytest.raises(RuntimeError, match="not its group's keeper"):
        check_lists(keep, remove.assign(keeper=["b", "b"]))


@pytest.mark.parametrize("value, text", [(None, ""), (float("nan"), ""), (pd.NA, ""), ("", ""), ("  cat ", "cat"),
                                         (3, "3"), (np.int64(3), "3"), (3.0, "3"), (np.float32(2.0), "2"),
                                         (0.5, "0.5"), (True, "True"), ("nan", "nan"), ("007", "007")])
def test_label_text_is_one_rule_for_every_entry_point(value, text):
    from neardup.contract import label_text

    assert label_text(value) == text


def test_labels_as_csv_dict_series_or_list_give_the_same_table(tmp_path):
    from neardup.fetch.inputs import labels_table
    from neardup.fetch.folder import load_labels_csv

    files = [tmp_path / n for n in ("a.jpg", "b.jpg", "c.jpg")]
    values = [1, None, "x"]
    expected = {"a.jpg": "1", "b.jpg": "", "c.jpg": "x"}
    assert labels_table(dict(zip(["a.jpg", "b.jpg", "c.jpg"], values)), files) == expected
    assert labels_table(pd.Series([1.0, np.nan, "x"], index=["a.jpg", "b.jpg", "c.jpg"]), files) == expected
    assert labels_table(values, files) == expected
    (tmp_path / "labels.csv").write_text("image_id,label\na.jpg,1\nb.jpg,\nc.jpg, x\n")
    assert load_labels_csv(tmp_path / "labels.csv") == expected
    with pytest.raises(TypeError, match="labels=...\\): expected a CSV path"):
        labels_table(42, files)
    from neardup.contract import UserError
    with pytest.raises(UserError, match="3 files and 2 labels"):
        labels_table([1, 2], files)


@pytest.mark.parametrize("images, said", [(None, "got NoneType None"), (42, "got int 42"), (b"x", "got bytes"),
                                          ([Path("a.jpg"), None], "every file must be a str or os.PathLike")])
def test_find_duplicates_says_what_it_takes(images, said, tmp_path):
    from neardup.api import find_duplicates

    with pytest.raises(TypeError, match=said):
        find_duplicates(images, out=tmp_path / "out")
    with pytest.raises(TypeError, match="out=...\\): expected a folder"):
        find_duplicates(tmp_path, out=3)


# ---------------------------------------------------------------- odd names in figures


@pytest.mark.parametrize("name", ["new\nline.jpg", "tab\there.jpg", "x" * 246 + ".jpg", "\u202egpj.exe",
                                  "שלום עולם.jpg", "$\\frac{a}$.jpg", "cr\rlf.jpg"])
def test_odd_file_names_are_drawn_as_they_are_spelt(name, tmp_path, photos):
    from neardup.render import group_figure
    from neardup.render.sheet import visible

    path = save(photos["astronaut"][:128, :128], tmp_path / "a.png")
    members = pd.DataFrame({"id": [name, "b.jpg"], "path": [str(path)] * 2, "label": [name, "1"],
                            "distance": [0.0, 0.1]})
    group_figure(members, tmp_path / "g.png", title=f"group of {name}", thumb_size=160)
    assert Image.open(tmp_path / "g.png").size[0] > 100
    shown = visible(name)
    assert "\n" not in shown and "\t" not in shown and "\r" not in shown and "\u202e" not in shown
    assert shown.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r").replace("\\u202e", "\u202e") == name


# ---------------------------------------------------------------- disk full, interrupts


def _stage_script(tmp_path: Path, body: str) -> Path:
    """A stage runner, run in ``tmp_path`` (with the project's params.yaml), whose ``run`` runs ``body``,
    through :func:`neardup.stage.main` as the ``stages/`` runners call it."""
    script = tmp_path / "stage.py"
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    head = ["import sys, time", f"sys.path.insert(0, {str(REPO)!r})", "from pathlib import Path",
            "from neardup.contract import atomic_write", "from neardup.stage import main", "",
            "def run(params, layout):"]
    script.write_text("\n".join(head + [textwrap.indent(textwrap.dedent(body).strip("\n"), "    "), "",
                                        "sys.exit(main('plant', run, argv=[]))", ""]))
    return script


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """A real ENOSPC (writing to /dev/full) in the middle of an atomic write, in a stage: exit 2, one
    line naming the file, its folder's free space and what to do; the half-written file is gone."""
    out = tmp_path / "cache"
    script = _stage_script(tmp_path, f"""
        def write(tmp):
            tmp.write_bytes(b"x" * 100_000)  # a part is written, then the disk is full
            with open("/dev/full", "wb") as full:
                full.write(b"x" * 10)
                full.flush()
        atomic_write(Path({str(out)!r}) / "model.tflite", write)
    """)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
    assert "no space left on the device of" in errors[0] and "free" in errors[0] and "run again" in errors[0]
    assert list(out.iterdir()) == []  # no .model.tflite.<pid>.tmp left to keep the disk full
    # bytes whose size is known: the message names the file (not its temporary) and what was needed
    from neardup.contract import UserError, atomic_write

    def part_then_full(self, data):
        with open(self, "wb") as fh:
            fh.write(data[:1000])
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", part_then_full)
    with pytest.raises(UserError, match=rf"of {out} writing x.bin \(3.0 MB needed\), .* free: free some space"):
        atomic_write(out / "x.bin", b"x" * 3 * 1024 * 1024)
    assert list(out.iterdir()) == []


def test_an_interrupt_is_one_line(tmp_path):
    script = _stage_script(tmp_path, """
        print("started", flush=True)
        time.sleep(60)
    """)
    # as from a terminal: a shell's background job (make test under nohup &) inherits SIGINT ignored
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert [line.split(" ERROR neardup: ")[1] for line in err.splitlines() if " ERROR " in line] == [
        "interrupted; finished work is kept: `dvc repro` resumes from there"]


def test_the_command_ends_in_one_line_on_an_interrupt_or_a_folder_it_cannot_write(tmp_path, monkeypatch, capsys):
    import neardup.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_find", interrupted)
    assert cli.main(["find", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip().startswith("neardup: interrupted")

    def forbidden(args):
        raise PermissionError(13, "Permission denied", "/root/out/keep.csv")

    monkeypatch.setattr(cli, "_find", forbidden)
    assert cli.main(["find", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("neardup: error: cannot write /root/out/keep.csv: Permission denied; "
                                               "choose a folder you can write to (or fix its permissions)")


# ---------------------------------------------------------------- params that reach a shell


INJECTIONS = ["x;touch {marker};#", "$(touch {marker})", "`touch {marker}`", "x\ntouch {marker}"]
COMMAND_PARAMS = [("embed", "models", True), ("embed", "sizes", True), ("hash", "methods", True),
                  ("cluster", "hash", False)]


def _params_with(tmp_path: Path, group: str, key: str, listed: bool, value: str) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params[group][key] = [value] if listed else value
    params["cache"]["dir"] = ""
    return params


@pytest.mark.parametrize("group, key, listed", COMMAND_PARAMS)
@pytest.mark.parametrize("attack", INJECTIONS)
def test_every_value_that_reaches_a_command_is_checked_first(tmp_path, group, key, listed, attack):
    from neardup.params import ParamsError
    from neardup.fetch.guard import check_params

    params = _params_with(tmp_path, group, key, listed, attack.format(marker="pwned"))
    with pytest.raises(ParamsError, match=f"{group}.{key}: .* is not a name"):
        check_params(params)


def test_dvc_repro_runs_nothing_a_param_smuggles_in(tmp_path, dvc_env):
    """A real ``dvc repro`` in a temp git repo, each command param in turn carrying a shell attack: the
    first stage stops the run with one line naming the param, and no command ever runs the attack."""
    repo = copy_pipeline(tmp_path / "repo")
    env = {**dvc_env, "PYTHONPATH": str(repo)}

    def sh(*cmd):
        return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)

    sh("git", "init", "-q")
    sh(sys.executable, "-m", "dvc", "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    for k, (group, key, listed) in enumerate(COMMAND_PARAMS):
        marker = tmp_path / f"pwned{k}"
        params = _params_with(tmp_path, group, key, listed, INJECTIONS[k].format(marker=marker))
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        proc = sh(sys.executable, "-m", "dvc", "repro")
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and not marker.exists(), out[-3000:]
        assert "Running stage 'embed" not in out and "Running stage 'hash" not in out, out[-3000:]
        assert "Running stage 'fetch_input'" in out, out[-3000:]  # DVC takes the value; the first stage stops it
        assert f"ERROR neardup: {group}.{key}: " in out and "is not a name" in out, out[-3000:]
        time.sleep(0.1)
    assert not list(tmp_path.glob("pwned*")) and not list(repo.rglob("pwned*"))


def test_a_cache_dir_that_cannot_be_written_is_named_by_the_first_stage(tmp_path):
    from neardup.params import ParamsError
    from neardup.fetch.guard import check_params

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["cache"]["dir"] = "/proc/nope"
    with pytest.raises(ParamsError, match="cache.dir '/proc/nope' is no folder this user can write"):
        check_params(params)
    params["cache"]["dir"] = str(tmp_path / "fine")
    check_params(params)
    assert (tmp_path / "fine").is_dir() and not list((tmp_path / "fine").iterdir())
