"""Planted copies: written outside the data, deterministic, scored, and never in reported groups."""
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from conftest import save
from neardup.cluster import cluster_vectors, graph_pairs, planted_outcomes, sweep_graph
from neardup.cluster.scoring import scored_graph
from neardup.contract import OUTCOME_COLUMNS, read_outcomes, write_table
from neardup.evaluate import planted_summary
from neardup.images import scan_files
from neardup.plant import PLANT_PREFIX, PLANTED_SET, plant_copies


def is_planted(ids) -> np.ndarray:
    return np.char.startswith(np.asarray(ids, dtype=str), PLANT_PREFIX)


def dataset(tmp_path, photos):
    root = tmp_path / "user_data"
    for name, array in photos.items():
        save(array, root / f"{name}.jpg", quality=90)
    return root, scan_files(sorted(root.iterdir()), root=root, set_name="train").manifest


def test_plants_are_written_outside_the_data_and_deterministic(tmp_path, photos):
    root, manifest = dataset(tmp_path, photos)
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    a = plant_copies(manifest, tmp_path / "plants_a", n=4, transforms=["hflip", "jpeg"], seed=3)
    b = plant_copies(manifest, tmp_path / "plants_b", n=4, transforms=["hflip", "jpeg"], seed=3)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before  # the user's folder is untouched
    assert all(str(tmp_path / "plants_a") in p for p in a.manifest["path"])
    assert list(a.manifest["sha256"]) == list(b.manifest["sha256"])
    assert list(a.truth["transform"]) == ["hflip", "jpeg", "hflip", "jpeg"]
    assert set(a.truth["original"]) <= set(manifest["id"]) and a.truth["original"].is_unique
    assert is_planted(a.manifest["id"]).all() and not is_planted(manifest["id"]).any()
    assert (a.manifest["set"] == PLANTED_SET).all()


def test_outcomes_hand_computed():
    truth = pd.DataFrame({"id": ["planted/1", "planted/2"], "original": ["x", "y"], "transform": ["jpeg", "crop"]})
    groups = pd.DataFrame({"eps": [0.1] * 5, "group": [0, 0, 1, 1, 1],
                           "id": ["x", "planted/1", "y", "planted/2", "z"]})
    real_ids = ["x", "y", "z"]
    near = sparse.csr_matrix(([0.05, 0.05], ([1, 2], [2, 1])), shape=(3, 3))  # y - z within eps directly
    out = planted_outcomes(groups, truth, [0.1, 0.2])
    at = out[out["eps"] == 0.1].set_index("id")
    assert at.loc["planted/1", "found"] and not at.loc["planted/1", "with_unrelated"]
    assert at.loc["planted/2", "found"] and at.loc["planted/2", "with_unrelated"]  # z is unrelated to y
    assert not out[out["eps"] == 0.2]["found"].any()  # an eps without groups still has rows
    # z is y's real duplicate (directly within eps of it): the copy joining both is not a false merge ...
    assert not planted_outcomes(groups, truth, [0.1], real_graph=near, real_ids=real_ids)["with_unrelated"].any()
    # ... but an image only chained to y (through z) is unrelated
    chained = pd.concat([groups, pd.DataFrame({"eps": [0.1], "group": [1], "id": ["w"]})], ignore_index=True)
    chain = sparse.csr_matrix(([0.05, 0.05, 0.05, 0.05], ([1, 2, 2, 3], [2, 1, 3, 2])), shape=(4, 4))
    far = planted_outcomes(chained, truth, [0.1], real_graph=chain, real_ids=real_ids + ["w"]).set_index("id")
    assert far.loc["planted/2", "with_unrelated"] and not far.loc["planted/1", "with_unrelated"]
    summary = planted_summary(out, 0.1)
    assert summary == {"planted_recall": 1.0, "planted_with_unrelated": 0.5, "recall_crop": 1.0, "recall_jpeg": 1.0}
    assert planted_summary(out, 0.2) == {"planted_recall": 0.0, "planted_with_unrelated": 0.0, "recall_crop": 0.0,
                                         "recall_jpeg": 0.0}
    assert planted_summary(out.iloc[:0], 0.1) == {}


def test_outcomes_survive_the_planted_csv(tmp_path):
    truth = pd.DataFrame({"id": ["planted/1", "planted/2"], "original": ["x", "y"], "transform": ["jpeg", "crop"]})
    groups = pd.DataFrame({"eps": [0.1, 0.1], "group": [0, 0], "id": ["x", "planted/1"]})
    out = planted_outcomes(groups, truth, [0.1, 0.3125])
    assert list(out.columns) == OUTCOME_COLUMNS
    write_table(out, tmp_path / "planted.csv")
    back = read_outcomes(tmp_path / "planted.csv")
    assert back["found"].tolist() == [True, False, False, False] and back["found"].dtype == bool
    pd.testing.assert_frame_equal(back, out)


@pytest.mark.parametrize("normalize_k", [0, 5])
def test_reported_groups_equal_clustering_without_plants(normalize_k):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 32)).astype(np.float32)
    real[150:170] = real[:20] + 0.03 * rng.normal(size=(20, 32)).astype(np.float32)
    plants = real[20:40] + 0.03 * rng.normal(size=(20, 32)).astype(np.float32)
    ids = [f"{i:03d}.jpg" for i in range(200)]
    plant_ids = [f"{PLANT_PREFIX}{i:03d}.jpg" for i in range(20)]
    truth = pd.DataFrame({"id": plant_ids, "original": ids[20:40], "transform": ["jpeg"] * 20})
    groups, pairs, outcomes = cluster_vectors(real, ids, ids, eps_values=[0.005, 0.05], metric="cosine",
                                          normalize_k=normalize_k, candidates=10, search="exact", nprobe=16,
                                          block=64, plant_vectors=plants, plant_ids=plant_ids, plant_truth=truth)
    graph, nearest = scored_graph(real, radius=0.05, candidates=10, metric="cosine", normalize_k=normalize_k,
                                   search="exact", nprobe=16, block=1024)
    alone = sweep_graph(graph, ids, ids, eps_values=[0.005, 0.05])
    pd.testing.assert_frame_equal(groups, alone, check_exact=False, atol=1e-6)  # float32 round-off
    assert not is_planted(groups["id"]).any() and not is_planted(pairs[["a", "b"]].to_numpy().ravel()).any()
    found = outcomes[outcomes["eps"] == 0.05]["found"]
    # normalised scores move a pair by how crowded its images' neighbourhoods are, so one copy may fall out
    assert len(found) == 20 and found.mean() >= (1.0 if normalize_k == 0 else 0.9)
    pd.testing.assert_frame_equal(pairs, graph_pairs(graph, ids, nearest), check_exact=False, atol=1e-6)
    assert (pairs["a"] < pairs["b"]).all() and len(pairs) >= (20 if normalize_k == 0 else 15)
