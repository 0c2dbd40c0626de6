"""Every param a message or docstring names (``cluster.eps``, ``fetch.folder.labels_csv``) exists in params.yaml."""
import ast
import re

import yaml

from conftest import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
#: ``<group>.<key>...`` not inside a longer name (``neardup.cluster.scoring``, ``neardup/embed/stage.py``)
NAME = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, PARAMS)) + r")((?:\.[A-Za-z_]\w*|\[[^\]\s]*\])+)")
FILE_SUFFIXES = {"py", "csv", "json", "jsonl", "npz", "yaml", "md", "png", "html", "txt"}


def string_literals(path):
    """``(line, text)`` of every string constant in a module, f-strings' literal parts included."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def exists(group: str, rest: str) -> bool:
    """Whether ``<group><rest>`` (``rest`` like ``.folder.labels_csv`` or ``.sets[0].input``) is a param."""
    node, parent = PARAMS[group], None
    for key, index in re.findall(r"\.([A-Za-z_]\w*)|\[([^\]]*)\]", rest):
        if not key:  # an index
            if group == "fetch" and parent is PARAMS["fetch"] and isinstance(node, list):
                node = {**PARAMS["fetch"], "name": ""}  # a set of fetch.sets: its own name, the rest as fetch's
                continue
            if not isinstance(node, list):
                return False
            node = None  # an element of a list of values: nothing below it
            continue
        if not isinstance(node, dict) or key not in node:
            return False
        parent, node = node, node[key]
    return True


def named_params():
    for path in sorted((REPO / "neardup").rglob("*.py")):
        for line, text in string_literals(path):
            for match in NAME.finditer(text):
                group, rest = match.groups()
                if rest.rsplit(".", 1)[-1] in FILE_SUFFIXES and rest.count(".") == 1:
                    continue  # a file name such as embed.py
                yield f"{path.relative_to(REPO)}:{line}", group + rest


def test_the_names_are_found():
    names = {name for _, name in named_params()}
    assert {"act.n_splits", "cluster.eps", "cluster.hash", "embed.models", "cache.dir"} <= names
    assert exists("fetch", ".folder.labels_csv") and exists("fetch", ".sets[0].folder.images")
    assert exists("embed", ".models[0]") and not exists("embed", ".models[0].x")
    assert not exists("fetch", ".labels_csv") and not exists("act", ".run") and not exists("cluster", ".eps.x")


def test_every_param_named_in_the_code_exists():
    unknown = sorted({f"{where}: {name}" for where, name in named_params() if not exists(*NAME.match(name).groups())})
    assert not unknown, "names of params that params.yaml does not have:\n" + "\n".join(unknown)
