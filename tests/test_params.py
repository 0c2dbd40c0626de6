"""neardup.params: every key required, typos and wrong types named, names checked by the stages."""
import copy

import pytest
import yaml

from conftest import REPO, assert_clean_error, run_stage_process, stage_commands
from neardup import params as params_module
from neardup.contract import UserError
from neardup.embed.models import MODEL_NAMES
from neardup.hash import HASH_METHODS
from neardup.params import ParamsError, check_choice, load_params
from neardup.transforms import TRANSFORMS

REPO_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
DROP = object()  # an override that removes the key


def _merge(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DROP:
            out.pop(key)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def write(tmp_path, changes: dict):
    """The repository's params.yaml with ``changes`` merged in (nested mappings merged key by key)."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_merge(REPO_PARAMS, changes)))
    return path


def load(tmp_path, group: str, changes: dict):
    return load_params(group, write(tmp_path, changes))


def assert_rejected(tmp_path, cases):
    """Each ``(changes, message)``: loading the changed group raises a ParamsError matching ``message``."""
    for changes, message in cases:
        group = next(iter(changes))
        with pytest.raises(ParamsError, match=message):
            load(tmp_path, group, changes)


def test_repository_params_are_valid_for_every_group():
    assert set(params_module.GROUPS) == {"fetch", "plant", "embed", "hash", "cluster", "evaluate", "act", "render",
                                         "cache", "engine"} == set(REPO_PARAMS)
    for group, cls in params_module.GROUPS.items():
        assert isinstance(load_params(group, REPO / "params.yaml"), cls)
    # the names only the stages know are valid too
    for model in load_params("embed", REPO / "params.yaml").models:
        check_choice(model, MODEL_NAMES, "embed.models")
    for name in load_params("plant", REPO / "params.yaml").transforms:
        check_choice(name, TRANSFORMS, "plant.transforms")
    hashes = load_params("hash", REPO / "params.yaml").methods
    for method in hashes:
        check_choice(method, HASH_METHODS, "hash.methods")
    assert load_params("cluster", REPO / "params.yaml").hash in hashes


def test_missing_key_is_named(tmp_path):
    assert_rejected(tmp_path, [
        ({"embed": {"batch_size": DROP}},
         r"^missing parameter 'embed.batch_size': add it to params.yaml$"),
        ({"fetch": {"demo": {"seed": DROP}}},
         r"missing parameter 'fetch.demo.seed'"),
        ({"hash": DROP},
         r"missing params group 'hash'"),
    ])
    with pytest.raises(ParamsError, match="params file not found"):
        load_params("cluster", tmp_path / "nope.yaml")


def test_typo_names_the_key_and_suggests(tmp_path):
    assert_rejected(tmp_path, [
        ({"cluster": {"metirc": "cosine"}},
         r"unknown parameter 'cluster.metirc' \(did you mean 'cluster.metric'\?\)"),
        ({"fetch": {"demo": {"n_dupes": 3}}},
         r"unknown parameter 'fetch.demo.n_dupes'.*did you mean 'fetch.demo.n_duplicates'"),
        ({"plant": {"tranforms": ["jpeg"]}},
         r"unknown parameter 'plant.tranforms' \(did you mean 'plant.transforms'\?\)"),
    ])
    # knobs that no longer exist are rejected, not silently ignored
    for group, key in (("cluster", "min_samples"), ("cluster", "mutual_k"), ("embed", "grayscale"),
                       ("embed", "hash"), ("hash", "hash_size")):
        with pytest.raises(ParamsError, match=f"unknown parameter '{group}.{key}'"):
            load(tmp_path, group, {group: {key: 1}})
    assert_rejected(tmp_path, [({"act": {"run": "dataset"}},
                                r"^unknown parameter 'act.run'; valid keys: prefer_set, n_splits, seed$")])
    with pytest.raises(ParamsError, match="unknown value 'report'.*valid: fetch, plant"):
        load_params("report", REPO / "params.yaml")


def test_wrong_types_are_named(tmp_path):
    assert_rejected(tmp_path, [
        ({"embed": {"batch_size": "32"}},
         r"^embed.batch_size must be an integer, got '32'$"),
        ({"embed": {"batch_size": True}},
         r"embed.batch_size must be an integer, got True"),
        ({"act": {"n_splits": 2.5}},
         r"act.n_splits must be an integer, got 2.5"),
        ({"cluster": {"eps": ["abc"]}},
         r"cluster.eps must be a non-empty list of positive numbers, got \['abc'\]"),
        ({"cluster": {"whiten": "high"}},
         r"cluster.whiten must be a number, got 'high'"),
        ({"cache": {"dir": 3}},
         r"cache.dir must be a string, got 3"),
        ({"fetch": {"demo": 5}},
         r"fetch.demo: expected a mapping of parameters"),
        ({"render": {"max_groups": "ten"}},
         r"^render.max_groups must be an integer, got 'ten'$"),
        # dvc.yaml makes a stage per entry of these, and DVC cannot read a single value there
        ({"hash": {"methods": "phash"}},
         r"^hash.methods must be a list, e.g. \[phash\], got 'phash' \(dvc.yaml makes one stage per entry\)$"),
        ({"embed": {"models": "efficientnet-lite0"}},
         r"^embed.models must be a list, e.g. \[efficientnet-lite0\]"),
        ({"embed": {"sizes": "auto"}},
         r"^embed.sizes must be a list, e.g. \[auto\]"),
    ])
    # elsewhere a single value where a list is expected is a list of one; an integer where a number is expected
    # is a float
    assert load(tmp_path, "plant", {"plant": {"transforms": "jpeg"}}).transforms == ("jpeg",)
    whiten = load(tmp_path, "cluster", {"cluster": {"whiten": 2}}).whiten
    assert whiten == 2.0 and isinstance(whiten, float)


def test_bad_values(tmp_path):
    assert_rejected(tmp_path, [
        ({"cluster": {"metric": "manhattan"}},
         "cluster.metric: unknown value 'manhattan'.*valid: cosine, euclidean"),
        ({"cluster": {"eps": [0.1, -1]}},
         "cluster.eps"),
        ({"cluster": {"eps": [0.1, 2.5]}},
         r"cluster.eps: cosine distances lie in \[0, 2\]"),
        ({"fetch": {"source": "s3"}},
         r"fetch.source: unknown value 's3'"),
        ({"embed": {"pooling": "gem"}},
         r"embed.pooling: unknown value 'gem'"),
        ({"embed": {"runtime": "tflit"}},
         r"^embed.runtime: unknown value 'tflit' \(did you mean 'tflite'\?\); valid: auto, tflite, keras$"),
        ({"plant": {"n": -3}},
         r"plant.n must be an integer >= 0"),
        ({"plant": {"transforms": []}},
         r"plant.transforms must list at least one transform"),
        ({"plant": {"n": -1}},
         r"^plant.n must be an integer >= 0, got -1$"),
        ({"cluster": {"eps": []}},
         r"^cluster.eps must be a non-empty list of positive numbers, got \[\]$"),
        ({"embed": {"sizes": []}},
         r"^embed.sizes must list at least one size"),
        ({"hash": {"methods": []}},
         r"^hash.methods must list at least one hash"),
        ({"cluster": {"verify": {"factor": 0}}},
         r"^cluster.verify.factor must lie in \(0, 1\], got 0.0$"),
        ({"cluster": {"verify": {"enabled": "yes"}}},
         r"^cluster.verify.enabled must be true or false, got 'yes'$"),
        ({"cluster": {"verify": {"min_inliers": 2}}},
         r"^cluster.verify.min_inliers must be >= 4"),
        ({"cluster": {"verify": {"min_ratio": 1.5}}},
         r"^cluster.verify.min_ratio must lie in \[0, 1\], got 1.5$"),
        ({"cluster": {"verify": {"refute_keypoints": -1}}},
         r"^cluster.verify.refute_keypoints must be >= 0 \(0: never\), got -1$"),
    ])
    assert_rejected(tmp_path, [({"embed": {"sizes": ["big"]}}, "embed.sizes"),
                               ({"embed": {"sizes": [16]}}, "embed.sizes"),
                               ({"hash": {"size": 1}}, "hash.size"),
                               ({"cluster": {"hash_weight": 1.0}}, "cluster.hash_weight"),
                               ({"cluster": {"whiten": -1}}, "cluster.whiten"),
                               ({"cluster": {"search": "fast"}}, "cluster.search"),
                               ({"cluster": {"metric": "euclidean", "eps": [3.0]}}, "need metric 'cosine'"),
                               ({"evaluate": {"min_precision": 1.5}}, "evaluate.min_precision"),
                               ({"act": {"n_splits": 1}}, "act.n_splits"),
                               ({"render": {"thumb_size": 8}}, "render.thumb_size")])
    seed = {"metric": "euclidean", "eps": [3.0], "whiten": 0, "hash_weight": 0, "normalize_k": 0}
    assert load(tmp_path, "cluster", {"cluster": seed}).metric == "euclidean"


def test_eps_sorted_and_scalar_accepted(tmp_path):
    assert load(tmp_path, "cluster", {"cluster": {"eps": [0.2, 0.1]}}).eps == (0.1, 0.2)
    seed = {"eps": 3, "metric": "euclidean", "whiten": 0, "hash_weight": 0, "normalize_k": 0}
    assert load(tmp_path, "cluster", {"cluster": seed}).eps == (3.0,)


def test_sizes_and_names_only_stages_know(tmp_path):
    embed = load(tmp_path, "embed", {"embed": {"sizes": ["auto", 96], "models": ["efficientnet-b9"]}})
    assert embed.sizes == ("auto", 96) and embed.models == ("efficientnet-b9",)  # loaded: the stage checks it
    assert load(tmp_path, "plant", {"plant": {"transforms": ["jpeg", "hlip"]}}).transforms == ("jpeg", "hlip")


def test_check_choice_says_what_was_meant():
    check_choice("hflip", TRANSFORMS, "plant.transforms")  # a valid value passes
    with pytest.raises(ParamsError) as info:
        check_choice("hlip", TRANSFORMS, "plant.transforms")
    assert str(info.value).startswith("plant.transforms: unknown value 'hlip' (did you mean 'hflip'?); valid: jpeg, ")
    assert all(name in str(info.value) for name in TRANSFORMS)
    with pytest.raises(ParamsError, match=r"embed.models: unknown value 'efficientnet-lite9' \(did you mean 'efficientnet-lite"):
        check_choice("efficientnet-lite9", MODEL_NAMES, "embed.models")
    with pytest.raises(ParamsError) as info:
        check_choice("md5", HASH_METHODS, "hash.methods")
    assert "did you mean" not in str(info.value) and str(info.value).endswith("valid: phash, dhash, ahash, whash")
    assert isinstance(info.value, UserError)  # a stage ends with the message, not a traceback


def test_sets_inherit_fetch_keys(tmp_path):
    base = {"input": "data/raw", "folder": {"labels_csv": "labels.csv"}, "demo": {"seed": 7}}
    sets = [{"name": "train2020", "source": "folder", "input": "data/raw/cassava2020",
             "folder": {"images": "train_images", "labels_csv": "train.csv", "label_map": "map.json"}},
            {"name": "train2019", "source": "folder", "input": "data/raw/cassava2019", "folder": {"images": "train"}},
            {"name": "extra", "source": "demo", "input": "elsewhere", "demo": {"n_distinct": 10}}]
    fetch = load(tmp_path, "fetch", {"fetch": {**base, "sets": sets}})
    first, second, third = fetch.sets
    assert (first.name, first.source, first.input) == ("train2020", "folder", "data/raw/cassava2020")
    assert (first.folder.images, first.folder.labels_csv, first.folder.label_map) == ("train_images", "train.csv",
                                                                                      "map.json")
    # keys a set leaves out, at any depth, are fetch's own
    assert (second.folder.images, second.folder.labels_csv, second.folder.label_map) == ("train", "labels.csv", "")
    assert second.kaggle == fetch.kaggle and second.tfrecords == fetch.tfrecords and second.demo.seed == 7
    assert third.demo.n_distinct == 10 and third.demo.seed == 7 and third.demo.n_duplicates == fetch.demo.n_duplicates
    assert_rejected(tmp_path, [
        ({"fetch": {"sets": [sets[0], {**sets[1], "input": "data/other"}]}},
         r"fetch.sets\[1\].input \(data/other\) must lie under fetch.input"),
        ({"fetch": {"sets": [sets[0], {**sets[1], "name": "train2020"}]}},
         "set names must be unique"),
        ({"fetch": {"sets": [{**sets[1], "folder": {"image": "train"}}]}},
         r"unknown parameter 'fetch.sets\[0\].folder.image' \(did you mean"),
        ({"fetch": {"sets": [{**sets[1], "source": "foldr"}]}},
         r"fetch.sets\[0\].source: unknown value 'foldr' \(did you mean 'folder'"),
    ])


# Each case as a user meets it: the stage's runner, started as dvc.yaml starts it, in a folder whose
# params.yaml has the one change; one line naming the param, exit code 2, no traceback.
RUNNER_CASES = [
    ("cluster", {"cluster": {"eps": ["abc"]}}, r"^cluster.eps must be a non-empty list of positive numbers"),
    ("embed", {"embed": {"batch_size": "32"}}, r"^embed.batch_size must be an integer, got '32'$"),
    ("render", {"render": {"max_groups": "ten"}}, r"^render.max_groups must be an integer, got 'ten'$"),
    ("hash", {"hash": {"methods": "phash"}}, r"^hash.methods must be a list, e.g. \[phash\]"),
    ("act", {"act": {"run": "dataset"}}, r"^unknown parameter 'act.run'; valid keys: prefer_set, n_splits, seed$"),
    ("cluster", {"cluster": {"eps": []}}, r"^cluster.eps must be a non-empty list of positive numbers, got \[\]$"),
    ("plant", {"plant": {"n": -1}}, r"^plant.n must be an integer >= 0, got -1$"),
]


@pytest.mark.parametrize("stage, changes, message", RUNNER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(RUNNER_CASES)])
def test_a_stage_runner_names_the_bad_param_in_one_line(tmp_path, stage, changes, message):
    argv = dict(stage_commands(REPO_PARAMS))[stage]  # the repository's arguments: the params fail first
    write(tmp_path, changes)
    assert_clean_error(run_stage_process(argv, tmp_path), message)
