"""The package's modules stand in layers: no import cycle, and no module imports one above it.

Every import statement of a module counts, wherever it stands: at the top, under
``if TYPE_CHECKING:`` (a type hint is a dependency of whoever reads the code, and of the type
checker) and inside a function (a lazy import only defers the cost of a dependency; it is still
one). Relative imports count as the absolute ones they name. What the walk cannot see: an
``importlib.import_module`` of a computed name (``checkpoint`` rebuilds ``unet.UNet`` and
``regnet.RegNet`` that way; both sit below it) and the ``__init__`` module, which imports
nothing. With no cycle, every module has a floor (one above the highest it imports), so none
imports from above itself; :data:`ABOVE` spells out the floors the design relies on.
"""
import ast
import pickle
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "segreg_lite"

#: (lower, upper) pairs of modules: the lower one must never reach the upper one, directly or
#: through others. The data container below its loaders; the run context below the methods,
#: which are below the experiment that calls them; the engines that run a sweep below the sweep
#: and the command.
ABOVE = [
    ("container", "nifti"), ("container", "oasis"), ("container", "cohort"), ("nifti", "data"), ("oasis", "data"),
    *[("context", m) for m in ("supervised", "registration", "meanteacher", "unimatch", "joint", "methods")],
    ("resultfiles", "runfolder"), ("runfolder", "context"), ("methods", "report"),
    *[(m, "methods") for m in ("supervised", "registration", "meanteacher", "unimatch", "joint")],
    ("methods", "experiment"), ("experiment", "jobs"), ("jobs", "sweep"), ("sweep", "cli"),
]


def imports(path: Path) -> list[tuple[str, int]]:
    """The package modules ``path`` imports (anywhere in it), with the line of each import;
    ``"__init__"`` for the package itself."""
    tree = ast.parse(path.read_text(), str(path))
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "segreg_lite" if node.level else node.module or ""
            if node.level and node.module:
                base = f"segreg_lite.{node.module}"
            if base == "segreg_lite":  # from segreg_lite import __version__ / a submodule
                names = [f"segreg_lite.{a.name}" if a.name in modules else "segreg_lite" for a in node.names]
            else:
                names = [base]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "segreg_lite":
                continue
            found.append((parts[1] if len(parts) > 1 else "__init__", node.lineno))
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {module it imports: the line of the first such import}."""
    graph = {}
    for path in sorted(PACKAGE.glob("*.py")):
        edges: dict[str, int] = {}
        for target, line in imports(path):
            if target != path.stem:
                edges.setdefault(target, line)
        graph[path.stem] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def floors(graph: dict[str, dict[str, int]]) -> dict[str, int]:
    """Each module's floor: 1 for one that imports no module of the package, else one above the
    highest it imports (the graph must have no cycle)."""
    memo: dict[str, int] = {}

    def floor(node: str) -> int:
        if node not in memo:
            memo[node] = 1 + max((floor(n) for n in graph.get(node, {})), default=0)
        return memo[node]

    return {node: floor(node) for node in graph}


def reaches(graph: dict[str, dict[str, int]], start: str, goal: str) -> list[str] | None:
    """A chain of imports from ``start`` to ``goal``, or None."""
    seen, todo = {start}, [[start]]
    while todo:
        chain = todo.pop()
        for nxt in graph.get(chain[-1], {}):
            if nxt == goal:
                return chain + [nxt]
            if nxt not in seen:
                seen.add(nxt)
                todo.append(chain + [nxt])
    return None


def test_the_walk_sees_every_kind_of_import(tmp_path):
    """Top-level, relative, TYPE_CHECKING and function-level imports all count; other packages do not."""
    src = tmp_path / "probe.py"
    src.write_text("import os\nfrom typing import TYPE_CHECKING\nfrom segreg_lite import __version__\n"
                   "from .config import TrainConfig\nif TYPE_CHECKING:\n    from segreg_lite.context import Run\n"
                   "def f():\n    import segreg_lite.jobs\n    from segreg_lite import data\n")
    assert imports(src) == [("__init__", 3), ("config", 4), ("context", 6), ("jobs", 8), ("data", 9)]
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        steps = [f"segreg_lite/{a}.py:{graph[a][b]} imports {b}" for a, b in zip(cycle, cycle[1:])]
        pytest.fail("import cycle: " + " -> ".join(cycle) + "\n  " + "\n  ".join(steps))
    assert len(graph) > 30 and floors(graph)["cli"] > floors(graph)["sweep"] > floors(graph)["context"]


def test_no_module_reaches_one_above_it():
    graph = import_graph()
    assert {m for pair in ABOVE for m in pair} <= set(graph), "ABOVE names a module that is not there"
    for lower, upper in ABOVE:
        chain = reaches(graph, lower, upper)
        assert chain is None, f"{lower} must stand below {upper}, but imports it: {' -> '.join(chain)}"


def test_moved_classes_keep_their_old_names():
    """``experiment.Run`` and ``data.Data`` are the classes that moved down, so old imports (and a
    ``Data`` pickled under its old module path) still load."""
    from segreg_lite import container, context, data, experiment

    assert experiment.Run is context.Run and data.Data is container.Data
    new = pickle.dumps(data.Data, protocol=0)  # a class is pickled by module and name: its new home
    assert b"segreg_lite.container" in new and pickle.loads(new) is container.Data
    assert pickle.loads(new.replace(b"segreg_lite.container", b"segreg_lite.data")) is container.Data
