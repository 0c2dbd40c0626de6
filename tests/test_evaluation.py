import numpy as np
import pandas as pd
import pytest

from neardup.contract import (GROUP_COLUMNS, PAIR_COLUMNS, groups_at, label_conflict_groups, read_groups, read_pairs,
                              variant_key, variant_keys, write_table)
from neardup.evaluate.metrics import score_groups, sweep_scores, truth_pairs
from neardup.evaluate.queue import capped_group_pairs


def groups(*members, eps=0.1, labels=None):
    rows = []
    for g, ids in enumerate(members):
        for i in ids:
            rows.append({"eps": eps, "group": g, "id": i, "label": (labels or {}).get(i, "")})
    return pd.DataFrame(rows, columns=["eps", "group", "id", "label"])


TRUTH = pd.DataFrame({"id": ["a1", "a2", "b1"], "original": ["a", "a", "b"], "transform": ["jpeg", "crop", "hflip"]})


def test_truth_pairs_include_copy_copy_pairs_and_respect_present():
    assert truth_pairs(TRUTH) == {("a", "a1"), ("a", "a2"), ("a1", "a2"), ("b", "b1")}
    assert truth_pairs(TRUTH, present=["a", "a1", "b1"]) == {("a", "a1")}


def test_scores_hand_computed():
    # group {a, a1, x}: 3 pairs, 1 true (a,a1); group {b, b1}: 1 pair, true. TP=2 of 4 proposed; 4 true pairs.
    g = groups(["a", "a1", "x"], ["b", "b1"])
    s = score_groups(g, truth_pairs(TRUTH))
    assert (s["tp"], s["n_pairs"], s["n_true_pairs"], s["n_groups"]) == (2, 4, 4, 2)
    assert s["precision"] == pytest.approx(0.5)
    assert s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(0.5)
    manifest = pd.DataFrame({"id": ["a", "a1", "x", "b", "b1"], "sha256": ["1", "2", "3", "4", "5"]})
    table, left_out = capped_group_pairs(g, manifest, variant="r", max_pairs=100)
    assert set(zip(table["a"], table["b"])) == {("a", "a1"), ("a", "x"), ("a1", "x"), ("b", "b1")}
    assert len(table) == s["n_pairs"] and left_out == 0


def test_empty_grouping():
    s = score_groups(groups(), truth_pairs(TRUTH))
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 0.0, 0.0)


def test_label_conflicts():
    g = groups(["a", "a1"], ["b", "b1"], ["c", "c1"], labels={"a": "cat", "a1": "dog", "b": "cat", "b1": "cat", "c": "x"})
    assert label_conflict_groups(g) == [0]  # c1 unlabelled: not a conflict


def test_sweep_and_choice():
    g = pd.concat([groups(["a", "a1"], eps=0.05), groups(["a", "a1", "a2"], ["b", "b1"], eps=0.1),
                   groups(["a", "a1", "a2", "b", "b1"], eps=0.2)])
    assert set(groups_at(g, 0.1 + 1e-12)["id"]) == {"a", "a1", "a2", "b", "b1"}  # float eps from a CSV
    assert groups_at(g, 0.05)["id"].tolist() == ["a", "a1"] and not len(groups_at(g, 0.3))
    sweep = sweep_scores(g, [0.05, 0.1, 0.2], truth_pairs(TRUTH))
    assert sweep["recall"].tolist() == pytest.approx([0.25, 1.0, 1.0])
    assert sweep["precision"].tolist() == pytest.approx([1.0, 1.0, 0.4])
    assert sweep["f1"].tolist() == pytest.approx([0.4, 1.0, 4 / 7])  # the eps rule (evaluate/eps.py) picks from these
    no_truth = sweep_scores(g, [0.05, 0.1, 0.2], None)
    assert no_truth["f1"].isna().all() and no_truth["n_pairs"].tolist() == [1, 4, 10]


def test_average_precision_hand_computed():
    from neardup.evaluate.metrics import average_precision

    true = {("a", "b"), ("c", "d"), ("e", "f")}
    pairs = pd.DataFrame({"a": ["a", "a", "c", "x"], "b": ["b", "c", "d", "y"], "distance": [0.1, 0.2, 0.3, 0.05]})
    # ranked: (x,y) miss, (a,b) hit@2 -> 1/2, (a,c) miss, (c,d) hit@4 -> 2/4; (e,f) never proposed -> 0
    assert average_precision(pairs, true) == pytest.approx((0.5 + 0.5) / 3)
    assert average_precision(pairs.iloc[[0, 2]], {("a", "b"), ("c", "d")}) == pytest.approx(1.0)
    assert average_precision(pairs.iloc[:0], true) == 0.0


def test_recall_at_precision():
    from neardup.evaluate.metrics import recall_at_precision

    sweep = pd.DataFrame({"eps": [0.1, 0.2, 0.3], "precision": [1.0, 0.92, 0.5], "recall": [0.3, 0.7, 0.9]})
    assert recall_at_precision(sweep) == 0.7
    assert recall_at_precision(sweep, min_precision=0.95) == 0.3
    assert recall_at_precision(sweep, min_precision=0.99) == 0.3
    assert recall_at_precision(sweep.assign(precision=[0.5, 0.4, 0.3])) == 0.0


def test_pair_sweep_scores_candidate_pairs_before_grouping():
    from neardup.evaluate.metrics import pair_sweep

    true = {("a", "b"), ("c", "d")}
    pairs = pd.DataFrame({"a": ["a", "b", "c"], "b": ["b", "c", "d"], "distance": [0.1, 0.2, 0.3]})
    sweep = pair_sweep(pairs, [0.05, 0.1, 0.2, 0.3], true)
    assert sweep["n_candidate_pairs"].tolist() == [0, 1, 2, 3]
    assert sweep["pair_precision"].tolist() == pytest.approx([1.0, 1.0, 0.5, 2 / 3])
    assert sweep["pair_recall"].tolist() == pytest.approx([0.0, 0.5, 0.5, 1.0])
    assert sweep["pair_f1"].iloc[-1] == pytest.approx(0.8)
    assert pair_sweep(pairs, [0.3], None)["pair_f1"].isna().all()


def test_variant_keys_primary_first_then_hash_baselines():
    assert variant_key("efficientnet-lite0", "auto") == "efficientnet-lite0_auto" and variant_key("phash") == "phash"
    assert variant_keys(["efficientnet-lite0", "efficientnet-lite2"], ["auto", 96], ["phash", "dhash"]) == [
        "efficientnet-lite0_auto", "efficientnet-lite0_96", "efficientnet-lite2_auto", "efficientnet-lite2_96",
        "phash", "dhash"]


def test_groups_and_pairs_survive_their_csv(tmp_path):
    groups = pd.DataFrame({"eps": [0.1, 0.1, 0.3125, 0.3125, 0.3125], "group": [0, 0, 0, 0, 0],
                           "id": ["a", "b", "a", "b", "c"], "label": ["cat", "", "cat", "", "dog"],
                           "distance": [0.01234567891, 0.01234567891, 0.0123456789, 0.0123456789, np.nan]},
                          columns=GROUP_COLUMNS)
    write_table(groups, tmp_path / "groups.csv")
    back = read_groups(tmp_path / "groups.csv")
    assert back["eps"].dtype == float and back["group"].dtype == int and back["label"].tolist()[:2] == ["cat", ""]
    assert np.isnan(back["distance"].iloc[-1])  # joined through other members: no distance of its own
    assert back["distance"].iloc[0] == 0.0123457  # floats written to 6 significant digits: same params, same bytes
    assert set(groups_at(back, 0.3125)["id"]) == {"a", "b", "c"}
    assert label_conflict_groups(groups_at(back, 0.3125)) == [0] and label_conflict_groups(groups_at(back, 0.1)) == []
    pairs = pd.DataFrame({"a": ["a", "a"], "b": ["b", "c"], "distance": [0.01, 0.3], "nearest": [1, 0],
                          "verified": [1, -1]}, columns=PAIR_COLUMNS)
    write_table(pairs, tmp_path / "pairs.csv")
    pd.testing.assert_frame_equal(read_pairs(tmp_path / "pairs.csv"), pairs)
