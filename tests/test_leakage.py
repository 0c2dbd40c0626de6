"""Overlap between sets, keep / remove lists and leakage-safe folds, on hand-made and random tables."""
import numpy as np
import pandas as pd
import pytest

from neardup.act import choose_keepers, fold_balance, leakage_safe_folds
from neardup.contract import display_labels
from neardup.evaluate import overlap_matrix
from neardup.params import ParamsError


def manifest(rows):
    """rows: (id, set, label, width, height)."""
    m = pd.DataFrame(rows, columns=["id", "set", "label", "width", "height"]).astype(str)
    return m.assign(label_name="", path="", sha256="", format="JPEG")


def groups(*members):
    return pd.DataFrame([(g, i) for g, ids in enumerate(members) for i in ids], columns=["group", "id"])


M = manifest([("a1", "train", "x", 100, 100), ("a2", "test", "x", 200, 100), ("b1", "train", "y", 50, 50),
              ("b2", "train", "y", 50, 50), ("c1", "test", "z", 10, 10), ("c2", "extra", "z", 10, 10),
              ("c3", "test", "z", 300, 300), ("d", "train", "x", 10, 10)])


def test_overlap_matrix_counts_images_with_a_duplicate_in_each_set():
    out = overlap_matrix(groups(["a1", "a2"], ["b1", "b2"], ["c1", "c2", "c3"]), M)
    assert list(out.index) == ["extra", "test", "train"] == list(out.columns)
    assert out.loc["train", "test"] == 1 and out.loc["test", "train"] == 1  # a1 <-> a2
    assert out.loc["train", "train"] == 2  # b1, b2
    assert out.loc["test", "test"] == 2 and out.loc["test", "extra"] == 2 and out.loc["extra", "test"] == 1
    assert out.loc["extra", "extra"] == 0 and out.loc["extra", "train"] == 0
    assert overlap_matrix(groups(), M).to_numpy().sum() == 0


def test_keepers_follow_the_rule_and_cover_every_group_once():
    g = groups(["a1", "a2"], ["b1", "b2"], ["c1", "c2", "c3"])
    keep, remove = choose_keepers(g, M, prefer_set="")
    assert keep["id"].tolist() == ["a2", "b1", "c3"]  # largest, then smallest id on a tie
    assert sorted(keep["id"].tolist() + remove["id"].tolist()) == sorted(g["id"])
    assert keep["group"].is_unique and set(keep["group"]) == set(g["group"])
    assert dict(zip(remove["id"], remove["keeper"])) == {"a1": "a2", "b2": "b1", "c1": "c3", "c2": "c3"}
    keep, remove = choose_keepers(g, M, prefer_set="train")
    assert keep["id"].tolist() == ["a1", "b1", "c3"]  # a train copy wins where the group has one
    assert keep["n_members"].tolist() == [2, 2, 3]


def test_lists_show_the_label_name_where_the_manifest_has_one():
    named = M.assign(label_name=M["label"].map({"x": "cassava mosaic", "y": ""}).fillna(""))
    assert display_labels(named).to_dict() == {"a1": "cassava mosaic", "a2": "cassava mosaic", "b1": "y", "b2": "y",
                                               "c1": "z", "c2": "z", "c3": "z", "d": "cassava mosaic"}
    keep, remove = choose_keepers(groups(["a1", "a2"], ["b1", "b2"]), named, prefer_set="")
    assert keep["label"].tolist() == ["cassava mosaic", "y"] and remove["label"].tolist() == ["cassava mosaic", "y"]
    folds = leakage_safe_folds(named, groups(["a1", "a2"]), n_splits=2, seed=0)
    assert set(folds["label"]) == {"cassava mosaic", "y", "z"}


def random_dataset(n=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["healthy", "CBB", "CMD", "CGM"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    m = manifest([(f"img{i:04d}", "train" if i % 5 else "test", labels[i], 100, 100) for i in range(n)])
    members, start = [], 0
    for size in rng.integers(2, 6, size=40):
        members.append([f"img{i:04d}" for i in range(start, start + size)])
        start += size + int(rng.integers(0, 5))
    return m, groups(*members)


def test_folds_keep_every_duplicate_group_together_and_stay_balanced():
    m, g = random_dataset()
    folds = leakage_safe_folds(m, g, n_splits=5, seed=0)
    assert len(folds) == len(m) and set(folds["id"]) == set(m["id"]) and set(folds["fold"]) == set(range(5))
    grouped = folds[folds["group"] >= 0]
    assert (grouped.groupby("group")["fold"].nunique() == 1).all()  # no group spans two folds
    assert grouped["group"].nunique() == g["group"].nunique()
    assert fold_balance(folds).abs().max().max() < 0.05  # each label's share per fold within 5 points
    sizes = folds["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 0.1 * len(m)
    again = leakage_safe_folds(m, g, n_splits=5, seed=0)
    assert again.equals(folds)
    assert not leakage_safe_folds(m, g, n_splits=5, seed=1)["fold"].equals(folds["fold"])


def test_fold_errors_say_what_to_do():
    with pytest.raises(ParamsError, match="act.n_splits must be >= 2"):
        leakage_safe_folds(M, groups(), n_splits=1, seed=0)
    with pytest.raises(ParamsError, match=r"^act.n_splits is 20 but the 8 image\(s\) can fill only 8 fold\(s\) "
                                          r".*: lower act.n_splits to at most 8$"):
        leakage_safe_folds(M, groups(), n_splits=20, seed=0)
    # a duplicate group fills one fold: 8 images in 3 groups and 1 single image are 4 fold units
    with pytest.raises(ParamsError, match="can fill only 4 fold.*at most 4$"):
        leakage_safe_folds(M, groups(["a1", "a2"], ["b1", "b2"], ["c1", "c2", "c3"]), n_splits=5, seed=0)
    with pytest.raises(ParamsError, match="can fill only 1 fold.*folds need 2 or more distinct images$"):
        leakage_safe_folds(M.iloc[:1], groups(), n_splits=2, seed=0)
    with pytest.raises(ParamsError, match="can fill only 1 fold"):
        leakage_safe_folds(M.iloc[:2], groups(["a1", "a2"]), n_splits=2, seed=0)


def test_folds_of_a_few_images_with_rare_labels_are_made_unstratified(caplog):
    few = M[M["id"].isin(["a1", "b1", "c1"])]  # three labels of one image each: scikit-learn cannot stratify
    with caplog.at_level("WARNING", logger="neardup.act"):
        folds = leakage_safe_folds(few, groups(), n_splits=3, seed=0)
    assert sorted(folds["fold"]) == [0, 1, 2] and "not stratified by label" in caplog.text
    folds = leakage_safe_folds(M.iloc[:3], groups(["a1", "a2"]), n_splits=2, seed=0)
    assert folds.set_index("id")["fold"]["a1"] == folds.set_index("id")["fold"]["a2"]
    assert sorted(folds["fold"].unique()) == [0, 1]
