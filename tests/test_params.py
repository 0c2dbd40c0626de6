import pytest

from neardup.params import ParamsError, load_params


def write(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_repository_params_are_valid():
    for group in ("fetch", "embed", "cluster", "evaluate", "render"):
        load_params(group, "params.yaml")


def test_typo_names_the_key_and_suggests(tmp_path):
    p = write(tmp_path, "cluster:\n  metirc: cosine\n")
    with pytest.raises(ParamsError, match=r"unknown parameter 'cluster.metirc'.*did you mean 'cluster.metric'"):
        load_params("cluster", p)
    p = write(tmp_path, "fetch:\n  demo:\n    n_dupes: 3\n")
    with pytest.raises(ParamsError, match=r"fetch.demo.n_dupes"):
        load_params("fetch", p)


def test_bad_values(tmp_path):
    with pytest.raises(ParamsError, match="cluster.metric"):
        load_params("cluster", write(tmp_path, "cluster:\n  metric: manhattan\n"))
    with pytest.raises(ParamsError, match="cluster.eps"):
        load_params("cluster", write(tmp_path, "cluster:\n  eps: [0.1, -1]\n"))
    with pytest.raises(ParamsError, match="unknown model 'efficientnet-b9'"):
        load_params("embed", write(tmp_path, "embed:\n  models: [efficientnet-b9]\n"))
    with pytest.raises(ParamsError, match="fetch.source"):
        load_params("fetch", write(tmp_path, "fetch:\n  source: s3\n"))


def test_eps_sorted_and_scalar_accepted(tmp_path):
    assert load_params("cluster", write(tmp_path, "cluster:\n  eps: [0.2, 0.1]\n")).eps == (0.1, 0.2)
    assert load_params("cluster", write(tmp_path, "cluster:\n  eps: 3.0\n  metric: euclidean\n")).eps == (3.0,)


def test_plant_typos_are_named(tmp_path):
    with pytest.raises(ParamsError, match=r"unknown parameter 'evaluate.plant.tranforms'.*did you mean 'evaluate.plant.transforms'"):
        load_params("evaluate", write(tmp_path, "evaluate:\n  plant:\n    tranforms: [jpeg]\n"))
    with pytest.raises(ParamsError, match=r"evaluate.plant.transforms: unknown transform 'hlip' \(did you mean 'hflip'\?\)"):
        load_params("evaluate", write(tmp_path, "evaluate:\n  plant:\n    transforms: [jpeg, hlip]\n"))
    with pytest.raises(ParamsError, match=r"evaluate.plant.n must be an integer >= 0"):
        load_params("evaluate", write(tmp_path, "evaluate:\n  plant:\n    n: -3\n"))
    with pytest.raises(ParamsError, match=r"hash.methods: unknown hash 'md5'"):
        load_params("hash", write(tmp_path, "hash:\n  methods: [md5]\n"))


def test_scoring_and_size_options(tmp_path):
    emb = load_params("embed", write(tmp_path, "embed:\n  sizes: [auto, 96]\n  hash: phash\n"))
    assert emb.sizes == ("auto", 96) and emb.hash == "phash"
    for text, key in [("embed:\n  sizes: [big]\n", "embed.sizes"), ("embed:\n  hash: md5\n", "embed.hash"),
                      ("cluster:\n  hash_weight: 1.0\n", "cluster.hash_weight"),
                      ("cluster:\n  whiten: -1\n", "cluster.whiten"),
                      ("cluster:\n  mutual_k: -2\n", "cluster.mutual_k"),
                      ("cluster:\n  metric: euclidean\n  eps: [3.0]\n  whiten: 1.0\n", "need metric 'cosine'")]:
        with pytest.raises(ParamsError, match=key):
            load_params(text.split(":")[0], write(tmp_path, text))
    seed = "cluster:\n  metric: euclidean\n  eps: [3.0]\n  whiten: 0\n  hash_weight: 0\n"
    assert load_params("cluster", write(tmp_path, seed)).metric == "euclidean"
