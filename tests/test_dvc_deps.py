"""DVC never serves a stale result: every file a stage's runner imports (transitively, imports inside
functions included) is among the stage's deps in dvc.yaml, and every code dep listed is imported."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO

PACKAGES = ("neardup", "stages")


def module_files(name: str, root: Path) -> list[Path]:
    """The files Python runs for ``import name``: every package ``__init__.py`` on the way, then the module."""
    parts, files = name.split("."), []
    for i in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:i])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
    return files


def imported_modules(path: Path, root: Path) -> set[str]:
    """Modules of this project that ``path`` imports anywhere (top level or inside functions)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    out = set()
    tree = ast.parse(path.read_text(), str(path))
    # a package's module-level __getattr__ (a lazy public name such as neardup.find_duplicates) runs only
    # when that name is looked up, which no stage does: its imports are not the stage's
    lazy = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__"
            and path.name == "__init__.py" for n in ast.walk(f)}
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[:-node.level] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return {m for m in out if m.split(".")[0] in PACKAGES}


def import_closure(runner: Path, root: Path) -> set[Path]:
    """Every project file that running ``runner`` can execute, by following imports."""
    seen, todo = set(), [runner]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path, root):
            todo.extend(f for f in module_files(module, root) if f not in seen)
    return seen


def stage_runner(stage: dict, root: Path) -> Path:
    match = re.search(r"python -m (stages\.\w+)", stage["cmd"])
    assert match, f"stage command does not run a stages/ module: {stage['cmd']}"
    return root / (match.group(1).replace(".", "/") + ".py")


def code_deps(stage: dict) -> list[str]:
    """The stage's deps that are project code (``neardup/...``, ``stages/...``)."""
    return [d for d in stage.get("deps", []) if isinstance(d, str) and d.split("/")[0] in PACKAGES]


def dep_problems(name: str, stage: dict, root: Path) -> list[str]:
    """What is wrong with one stage's code deps: imported files not covered, listed code never imported."""
    deps = code_deps(stage)
    runner = stage_runner(stage, root)
    # `python -m stages.x` first runs the __init__ of every package above the runner
    inits = [parent / "__init__.py" for parent in runner.relative_to(root).parents if parent != Path(".")]
    files = set().union(*(import_closure(f, root) for f in [runner, *(root / i for i in inits)]
                          if f.is_file()))
    rel = sorted(f.relative_to(root).as_posix() for f in files)

    def covers(dep: str, file: str) -> bool:
        return file == dep or file.startswith(dep.rstrip("/") + "/")

    problems = [f"{name}: imports {f} but dvc.yaml does not list it" for f in rel
                if not any(covers(d, f) for d in deps)]
    problems += [f"{name}: lists {d} but never imports it" for d in deps if not any(covers(d, f) for f in rel)]
    return problems


def pipeline() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(pipeline()))
def test_stage_deps_cover_every_import(name):
    assert dep_problems(name, pipeline()[name], REPO) == []


@pytest.mark.parametrize("name", sorted(pipeline()))
def test_removing_any_code_dep_is_caught(name):
    """The check can fail: drop any one code dep of a stage and it reports the file."""
    stage = pipeline()[name]
    for dep in code_deps(stage):
        broken = dict(stage, deps=[d for d in stage["deps"] if d != dep])
        problems = dep_problems(name, broken, REPO)
        assert any(dep in p or p.split(" imports ")[-1].startswith(dep) for p in problems), (dep, problems)


def test_closure_follows_imports_inside_functions(tmp_path):
    """A lazy import inside a function, a relative import and a package __init__ all count."""
    for rel, text in {"stages/__init__.py": "", "stages/s.py": "def main():\n    from neardup.a import f\n",
                      "neardup/__init__.py": "", "neardup/a/__init__.py": "from .b import g\n",
                      "neardup/a/b.py": "import neardup.c\n", "neardup/c.py": "", "neardup/unused.py": ""}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = {p.relative_to(tmp_path).as_posix() for p in import_closure(tmp_path / "stages/s.py", tmp_path)}
    assert found == {"stages/s.py", "neardup/__init__.py", "neardup/a/__init__.py", "neardup/a/b.py", "neardup/c.py"}
    # ... but not the imports of a package's lazy __getattr__, which only a lookup of that name runs
    (tmp_path / "neardup/__init__.py").write_text("def __getattr__(name):\n    from neardup.unused import x\n")
    found = {p.relative_to(tmp_path).as_posix() for p in import_closure(tmp_path / "stages/s.py", tmp_path)}
    assert "neardup/unused.py" not in found and "neardup/c.py" in found
