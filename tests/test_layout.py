"""One layout: dvc.yaml's deps and outs are the paths `Layout` gives, and no other module types a path."""
from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, stage_commands

from neardup import contract
from neardup.contract import variant_keys
from neardup.layout import CURVES, Layout
from neardup.stage import STAGES, primary_steps

DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def expanded_paths() -> set[str]:
    """Every data path (not code) in dvc.yaml's deps, outs, metrics and plots, for the default params,
    matrix stages expanded."""
    paths = next(v["paths"] for v in DVC_YAML["vars"] if "paths" in v)
    scope = {**PARAMS, "paths": paths}

    def lookup(expr, item):
        value = {**scope, "item": item}
        for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", expr):
            value = value[int(index)] if index else value[name]
        return str(value)

    found = set()
    for stage in DVC_YAML["stages"].values():
        matrix = stage.get("matrix", {})
        keys = list(matrix)
        combos = [dict(zip(keys, c)) for c in itertools.product(*(scope_list(v) for v in matrix.values()))]
        for item in combos:
            for field in ("deps", "outs", "metrics", "plots"):
                for entry in stage.get(field, []):
                    text = entry if isinstance(entry, str) else next(iter(entry))
                    if text.startswith(("neardup/", "stages/", "${fetch.input}")):
                        continue
                    found.add(re.sub(r"\$\{([^}]+)\}", lambda m: lookup(m.group(1), item), text))
    return found


def scope_list(value):
    """A matrix entry (``${embed.models}``) as its list in the default params."""
    group, key = value[2:-1].split(".")
    return PARAMS[group][key]


def layout_paths(layout: Layout) -> set[str]:
    """Every path the layout gives for the default params' variants, relative to its root."""
    embed, hashes = PARAMS["embed"], PARAMS["hash"]["methods"]
    cnn = variant_keys(embed["models"], embed["sizes"])
    files = [layout.path(name) for name in layout.paths] + [layout.manifest(), layout.manifest(plants=True),
                                                            layout.plants_truth, layout.primary_metrics]
    files += [layout.dataset / name for name in (contract.SKIPPED, contract.TRUTH)]
    files += [layout.primary_curve(c) for c in ("eps", "pr")]
    for variant in cnn + hashes:
        files += [layout.clusters(variant), layout.evaluation(variant), layout.metrics(variant),
                  layout.evaluation(variant) / contract.GROUPS]
        files += [layout.curve(c, variant) for c in CURVES]
    for plants in (False, True):
        files += [layout.embeddings(v, plants=plants) for v in cnn] + [layout.hashes(m, plants=plants) for m in hashes]
    return {p.relative_to(layout.root).as_posix() for p in files}


def test_every_path_in_dvc_yaml_is_one_the_layout_gives():
    missing = expanded_paths() - layout_paths(Layout.of_project(REPO))
    assert not missing, f"dvc.yaml names paths Layout does not give: {sorted(missing)}"
    # ... and the check can fail: a path spelt differently in dvc.yaml is found
    assert "data/embeddings/efficientnet-lite0_auto.plants.npz" in expanded_paths()


def test_find_output_and_a_project_have_the_same_layout(tmp_path):
    project, out = Layout.of_project(REPO), Layout.at(tmp_path)
    assert project.paths == out.paths and not out.is_project and project.is_project
    assert out.clusters("x") == tmp_path / "data" / "clusters" / "x"
    assert Layout.find(tmp_path) == out and Layout.find(REPO) == project


def test_the_layout_needs_a_pipeline(tmp_path):
    from neardup.contract import UserError

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(UserError, match="no vars.paths block"):
        Layout.of_project(tmp_path)
    with pytest.raises(UserError, match="no dvc.yaml here"):
        Layout.of_project(tmp_path / "nowhere")


def test_the_stage_table_matches_dvc_yaml_and_find():
    """Every runner of dvc.yaml names a stage of the table, each with its own `run`; find's steps are stages."""
    for name, argv in stage_commands(PARAMS):
        module = argv[argv.index("-m") + 1]
        assert module.startswith("stages.") and module.split(".")[1] in STAGES, argv
    runner = (REPO / "stages" / "embed.py").read_text()
    assert f"from {STAGES['embed'][0]} import run" in runner
    assert {name for name, _ in primary_steps(PARAMS)} <= set(STAGES)


def _literals(path: Path):
    """String constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_no_module_types_a_path_or_file_name_of_the_layout():
    """Paths live in the layout (dvc.yaml's vars.paths), file names in the contract: no other module
    of the package spells one."""
    paths = next(v["paths"] for v in DVC_YAML["vars"] if "paths" in v).values()
    names = {p for p in paths} | {Path(p).name for p in paths if "." in Path(p).name}
    names |= {v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str) and v.endswith((".csv", ".json",
                                                                                                          ".txt"))}
    found = []
    for path in sorted((REPO / "neardup").rglob("*.py")):
        if path.name in ("layout.py", "contract.py"):
            continue
        for text in _literals(path):
            found += [f"{path.relative_to(REPO)}: {text!r}" for name in names if name in text]
    assert not found, found
