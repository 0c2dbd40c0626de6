import io
import itertools
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import save
from neardup.contract import read_queue, write_table
from neardup.evaluate.queue import (QUEUE_COLUMNS, REVIEW_COLUMNS, build_queue, capped_group_pairs, load_reviews,
                                    pair_key, reviewed_precision, save_reviews)
from neardup.images import scan_files
from neardup.render.pairs import draw_pair_figures
from neardup.review import main, review

GROUPS = {0: ["astronaut.png", "astronaut_copy.png", "coffee.png", "coffee_q50.jpg"],
          1: ["chelsea.png", "rocket.png"], 2: ["china.png", "flower.png"]}
LABELS = {"astronaut.png": "person", "astronaut_copy.png": "person", "coffee.png": "cup", "coffee_q50.jpg": "plant",
          "chelsea.png": "cat", "rocket.png": "rocket", "china.png": "temple", "flower.png": "flower"}


def small(array, side=96):
    im = Image.fromarray(array)
    im.thumbnail((side, side))
    return np.asarray(im)


def make_dataset(root, photos, rename=lambda name: name):
    """Real small images: six photos, a byte-identical copy and a JPEG re-encoding; returns the manifest."""
    for name in ("astronaut", "coffee", "chelsea", "rocket", "china", "flower"):
        save(small(photos[name]), root / rename(f"{name}.png"))
    shutil.copyfile(root / rename("astronaut.png"), root / rename("astronaut_copy.png"))
    save(small(photos["coffee"]), root / rename("coffee_q50.jpg"), quality=50)
    labels = {rename(k): v for k, v in LABELS.items()}
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return scan_files(files, root=root, set_name="train", labels=labels).manifest


def groups_frame(rename=lambda name: name, eps=0.1):
    rows = [(eps, g, rename(i), LABELS[i], 0.0) for g, ids in GROUPS.items() for i in ids]
    return pd.DataFrame(rows, columns=["eps", "group", "id", "label", "distance"])


def fake_distance(a_ids, b_ids):
    """A deterministic distance per pair (stands in for an embedding's cosine distance)."""
    return np.array([(len(a) * 7 + len(b) * 3) % 11 / 100 for a, b in zip(a_ids, b_ids)])


def scripted(answers, asked):
    it = iter(answers)

    def ask(prompt):
        asked.append(prompt)
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None
    return ask


def group_pairs_table(groups, manifest, *, variant, distance=None):
    """Every pair inside the groups (the queue, uncapped), scored by ``distance(a_ids, b_ids)`` when given."""
    scored = None
    if distance is not None:
        combos = [p for _, ids in groups.groupby("group")["id"] for p in itertools.combinations(sorted(set(ids)), 2)]
        a, b = [x for x, _ in combos], [y for _, y in combos]
        scored = pd.DataFrame({"a": a, "b": b, "distance": np.asarray(distance(a, b), float), "nearest": 1})
    return capped_group_pairs(groups, manifest, variant=variant, pairs=scored, max_pairs=10**6)[0]


@pytest.fixture
def data(tmp_path, photos):
    manifest = make_dataset(tmp_path / "images", photos)
    pairs = group_pairs_table(groups_frame(), manifest, variant="lite0_224", distance=fake_distance)
    return manifest, pairs


def test_pairs_table_counts_and_hashes(data):
    manifest, pairs = data
    assert list(pairs.columns) == [c for c in QUEUE_COLUMNS if c not in ("verdict", "figure")]
    assert len(pairs) == sum(len(ids) * (len(ids) - 1) // 2 for ids in GROUPS.values()) == 8
    assert (pairs["a"] < pairs["b"]).all()
    sha = manifest.set_index("id")["sha256"]
    assert (pairs["sha_a"].to_numpy() == sha[pairs["a"]].to_numpy()).all()
    assert (pairs["sha_b"].to_numpy() == sha[pairs["b"]].to_numpy()).all()
    assert np.allclose(pairs["distance"], fake_distance(pairs["a"], pairs["b"]))
    assert set(map(tuple, pairs[pairs["a"].isin(GROUPS[1])][["a", "b"]].to_numpy())) == {("chelsea.png", "rocket.png")}
    no_dist = group_pairs_table(groups_frame(), manifest, variant="x")
    assert no_dist["distance"].isna().all() and len(no_dist) == 8
    with pytest.raises(ValueError, match="several eps"):
        group_pairs_table(pd.concat([groups_frame(eps=0.1), groups_frame(eps=0.2)]), manifest, variant="x")
    with pytest.raises(ValueError, match="not in the manifest"):
        group_pairs_table(groups_frame(rename=lambda n: "missing/" + n), manifest, variant="x")


def test_byte_identical_pair_is_a_duplicate_without_review(data):
    manifest, pairs = data
    queue = build_queue(pairs, load_reviews("/nonexistent/reviews.csv"))
    assert list(queue.columns) == QUEUE_COLUMNS
    same = queue[(queue["a"] == "astronaut.png") & (queue["b"] == "astronaut_copy.png")]
    assert same["sha_a"].iloc[0] == same["sha_b"].iloc[0] and same["verdict"].iloc[0] == "duplicate"
    assert (queue.loc[queue.index != same.index[0], "verdict"] == "").all()
    assert list(queue["distance"]) == sorted(queue["distance"]) and (queue["figure"] == "").all()

    # one verdict on (astronaut, coffee) also holds for (astronaut_copy, coffee): same content
    sha = manifest.set_index("id")["sha256"]
    verdict = pd.DataFrame([[*pair_key(sha["coffee.png"], sha["astronaut.png"]), "different", "", ""]],
                           columns=REVIEW_COLUMNS)
    again = build_queue(pairs, verdict).set_index(["a", "b"])["verdict"]
    assert again[("astronaut.png", "coffee.png")] == again[("astronaut_copy.png", "coffee.png")] == "different"
    assert again[("astronaut.png", "astronaut_copy.png")] == "duplicate"


def test_verdicts_follow_content_across_runs_and_renamed_files(data, tmp_path, photos):
    manifest, pairs = data
    reviews_path = tmp_path / "reviewed_pairs.csv"
    q1 = build_queue(pairs, load_reviews(reviews_path))
    asked = []
    review(q1, manifest, reviews_path, figures_dir=tmp_path / "figs", ask=scripted(["d", "n", "u"], asked),
           say=lambda *_: None)
    assert sorted(load_reviews(reviews_path)["verdict"]) == ["different", "duplicate", "unsure"]
    first = build_queue(pairs, load_reviews(reviews_path))
    assert {"duplicate", "different", "unsure", ""} == set(first["verdict"])

    # another model (other distances), another run name, every file renamed: same content, same verdicts
    rename = lambda name: "renamed/" + name.replace(".", "_v2.")  # noqa: E731
    manifest2 = make_dataset(tmp_path / "other", photos, rename=rename)
    assert set(manifest2["id"]).isdisjoint(manifest["id"])
    pairs2 = group_pairs_table(groups_frame(rename=rename), manifest2, variant="lite2_260",
                               distance=lambda a, b: np.arange(len(a))[::-1] / 10)
    second = build_queue(pairs2, load_reviews(reviews_path))
    by_key = lambda q: {pair_key(x, y): v for x, y, v in zip(q["sha_a"], q["sha_b"], q["verdict"])}  # noqa: E731
    assert by_key(second) == by_key(first)
    assert (second["variant"] == "lite2_260").all()


def test_review_loop_saves_every_answer_and_resumes(data, tmp_path):
    manifest, pairs = data
    queue = build_queue(pairs, load_reviews(tmp_path / "none.csv"))
    pending = queue[queue["verdict"] == ""]
    keys = list(dict.fromkeys(pair_key(x, y) for x, y in zip(pending["sha_a"], pending["sha_b"])))
    assert len(keys) == 5 < len(pending) == 7  # astronaut and its byte copy make two pairs with one key
    reviews_path, figures = tmp_path / "review" / "reviewed_pairs.csv", tmp_path / "review" / "pairs"
    asked, said, shown = [], [], []
    out = review(queue, manifest, reviews_path, figures_dir=figures, ask=scripted(["d", "x", "n", "q"], asked),
                 say=said.append, show=shown.append)
    assert len(asked) == 4  # pair 1: d; pair 2: x (asked again), n; pair 3: q
    assert any("unknown answer 'x'" in s for s in said)
    saved = load_reviews(reviews_path)
    assert len(saved) == len(out) == 2
    verdict = {pair_key(a, b): v for a, b, v in zip(saved["sha_a"], saved["sha_b"], saved["verdict"])}
    assert verdict == {keys[0]: "duplicate", keys[1]: "different"}
    assert (saved["sha_a"] < saved["sha_b"]).all() and list(saved.columns) == REVIEW_COLUMNS
    assert len(shown) == 3 and all(p.is_file() for p in shown)
    with Image.open(shown[0]) as im:
        assert im.format == "PNG" and im.width > 300

    # a new session starts at the third pending pair
    said2 = []
    review(queue, manifest, reviews_path, figures_dir=figures, ask=scripted(["u"], []), say=said2.append)
    third = next(s for s in said2 if s.startswith("[1/"))
    third_row = pending[[pair_key(x, y) == keys[2] for x, y in zip(pending["sha_a"], pending["sha_b"])]].iloc[0]
    assert f"{third_row['a']}  <->  {third_row['b']}" in third and third.startswith("[1/3]")
    assert any(str(figures) in s for s in said2)  # no show: the figure path is printed
    assert len(load_reviews(reviews_path)) == 3


def test_eof_stops_cleanly(data, tmp_path):
    manifest, pairs = data
    queue = build_queue(pairs, load_reviews(tmp_path / "none.csv"))
    path = tmp_path / "reviewed_pairs.csv"
    out = review(queue, manifest, path, figures_dir=tmp_path / "f", ask=scripted([], []), say=lambda *_: None)
    assert len(out) == 0 and not path.exists()
    out = review(queue, manifest, path, figures_dir=tmp_path / "f", ask=scripted(["n"], []), say=lambda *_: None)
    assert list(load_reviews(path)["verdict"]) == ["different"]


def test_reviewed_precision_hand_computed():
    queue = pd.DataFrame({"verdict": ["duplicate", "duplicate", "different", "unsure", ""]})
    s = reviewed_precision(queue)
    assert (s["n_pairs"], s["n_duplicate"], s["n_different"], s["n_unsure"], s["n_pending"]) == (5, 2, 1, 1, 1)
    assert s["reviewed_precision"] == pytest.approx(2 / 3)
    assert s["precision_lower"] == pytest.approx(2 / 5)
    assert s["precision_upper"] == pytest.approx(4 / 5)
    empty = reviewed_precision(pd.DataFrame({"verdict": pd.Series(dtype=str)}))
    assert (empty["precision_lower"], empty["precision_upper"]) == (1.0, 1.0)
    assert math.isnan(empty["reviewed_precision"])
    assert math.isnan(reviewed_precision(pd.DataFrame({"verdict": ["unsure", ""]}))["reviewed_precision"])


def test_load_reviews_validates_and_save_is_atomic(tmp_path):
    path = tmp_path / "reviewed_pairs.csv"
    empty = load_reviews(path)
    assert list(empty.columns) == REVIEW_COLUMNS and len(empty) == 0
    path.write_text("sha_a,sha_b,verdict,id_a,id_b\naa,bb,duplicate,x,y\naa,cc,maybe,x,z\n")
    with pytest.raises(ValueError, match=r"reviewed_pairs\.csv: row 2 .*'maybe'"):
        load_reviews(path)
    path.write_text("sha_a,sha_b,id_a,id_b\naa,bb,x,y\n")
    with pytest.raises(ValueError, match=r"reviewed_pairs\.csv: missing column.*verdict"):
        load_reviews(path)

    rows = pd.DataFrame([["dd", "cc", "unsure", "d.png", "c.png"], ["aa", "bb", "duplicate", "a", "b"],
                         ["cc", "dd", "different", "c.png", "d.png"]], columns=REVIEW_COLUMNS)
    save_reviews(rows, path)
    got = load_reviews(path)
    assert got.values.tolist() == [["aa", "bb", "duplicate", "a", "b"], ["cc", "dd", "different", "c.png", "d.png"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviewed_pairs.csv"]  # no temporary file left
    with pytest.raises(ValueError, match="'bogus'"):
        save_reviews(rows.assign(verdict="bogus"), path)
    assert load_reviews(path).values.tolist() == got.values.tolist()  # a failed save leaves the file alone


def test_draw_pair_figures_pending_first(data, tmp_path):
    manifest, pairs = data
    unique = pairs[~pairs["a"].str.startswith("astronaut") & ~pairs["b"].str.startswith("astronaut")].index[0]
    reviewed = pd.DataFrame([[*pair_key(*pairs.loc[unique, ["sha_a", "sha_b"]]), "different", "", ""]],
                            columns=REVIEW_COLUMNS)  # a pair no other pair shares its content key with
    queue = build_queue(pairs, reviewed)
    out_dir = tmp_path / "reports" / "review" / "pairs"
    drawn = draw_pair_figures(queue, manifest, out_dir, max_figures=6, thumb_size=64)
    figs = drawn[drawn["figure"] != ""]
    assert len(figs) == 6 and (figs["verdict"] == "").all()  # 6 pending pairs of 8, before the 2 decided
    assert figs["figure"].is_unique and (drawn.drop(columns="figure") == queue.drop(columns="figure")).all().all()
    for name in figs["figure"]:
        assert not name.startswith("/") and name.startswith("lite0_224/")
        with Image.open(out_dir / name) as im:
            im.load()
            assert im.format == "PNG" and im.width > 200 and im.height > 100
    assert len(list(out_dir.rglob("*.png"))) == 6


def test_cli_reviews_from_stdin(data, tmp_path, monkeypatch, capsys):
    manifest, pairs = data
    figures = tmp_path / "reports" / "review" / "pairs"
    queue = draw_pair_figures(build_queue(pairs, load_reviews(tmp_path / "none.csv")), manifest, figures,
                              max_figures=1, thumb_size=64)
    write_table(queue, tmp_path / "queue.csv")
    back = read_queue(tmp_path / "queue.csv")
    assert list(back.columns) == QUEUE_COLUMNS and np.allclose(back["distance"], queue["distance"])
    write_table(manifest, tmp_path / "manifest.csv")
    monkeypatch.setattr("sys.stdin", io.StringIO("d\nn\nq\n"))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    rc = main(["--queue", str(tmp_path / "queue.csv"), "--manifest", str(tmp_path / "manifest.csv"),
               "--reviews", str(tmp_path / "reviewed_pairs.csv"), "--figures", str(figures), "--open"])
    assert rc == 0
    assert sorted(load_reviews(tmp_path / "reviewed_pairs.csv")["verdict"]) == ["different", "duplicate"]
    out = capsys.readouterr().out
    s = reviewed_precision(build_queue(pairs, load_reviews(tmp_path / "reviewed_pairs.csv")))
    assert s["n_duplicate"] >= 2 and s["n_different"] >= 1  # the byte copy, plus a verdict each
    assert (f"lite0_224: 8 pairs, {s['n_duplicate']} duplicate, {s['n_different']} different, 0 unsure, "
            f"{s['n_pending']} pending; precision {s['reviewed_precision']:.3f}") in out
    assert len(list(figures.rglob("*.png"))) == 3  # one drawn ahead, two drawn during the review


def test_cli_help_names_the_module_to_run(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m neardup.review ")
