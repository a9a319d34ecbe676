"""The package's shape: no import cycle, settings read in one module, every record round-trips.

Imports are read from the source (every ``import`` statement, those inside functions
included), so a cycle hidden behind a lazy import counts as one.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ctpipe.datasets import DATASETS

from ..conftest import ROOT

PACKAGE = ROOT / "include" / "ctpipe"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_only(path: Path) -> set[int]:
    """Line numbers of imports under ``if TYPE_CHECKING:``: they never run."""
    lines = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    lines.add(inner.lineno)
    return lines


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {}
    for name, path in files.items():
        skipped = type_checking_only(path)
        tree = ast.parse(path.read_text())
        targets = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                targets |= {c for c in candidates if c in modules}
        # A package's submodule importing its own package's __init__ is not a cycle through the submodule.
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_module_of_the_package_imports_itself_back():
    graph = import_graph()
    assert "ctpipe.settings" in graph and "ctpipe.records" in graph
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_behind_a_lazy_import():
    """A planted cycle of the kind the package once had (training <-> torch_pyfunc, both lazy)."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b", "a"]]


def test_the_leaf_modules_stay_leaves():
    """What DAG files and every stage import must not pull the stages back in."""
    graph = import_graph()
    assert graph["ctpipe.records"] == set()
    assert graph["ctpipe.promotion"] == set()
    assert graph["ctpipe.drift"] == {"ctpipe.records"}
    assert graph["ctpipe.experiment"] == set()
    assert graph["ctpipe.settings"] <= {"ctpipe.datasets", "ctpipe.drift", "ctpipe.experiment", "ctpipe.promotion"}


def test_the_second_example_dataset_is_reached_by_its_import_path_alone():
    """Like a team's own dataset: no module of the package but its own generator imports it."""
    graph = import_graph()
    importers = sorted(m for m, targets in graph.items() if targets & {"ctpipe.datasets.shop_returns"})
    assert importers == ["ctpipe.datasets.shop_returns_generator"]
    assert not [m for m, targets in graph.items() if "ctpipe.datasets.shop_returns_generator" in targets]
    assert not [name for name, path in DATASETS.items() if "shop_returns" in path]


def environment_reads(path: Path) -> list[int]:
    """Lines of ``path`` that read ``os.environ`` or ``os.getenv``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and getattr(node.value, "id", "") == "os"
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_settings_module_reads_the_environment():
    readers = {
        module_name(path): environment_reads(path)
        for path in PACKAGE.rglob("*.py")
        if environment_reads(path) and path.name != "settings.py"
    }
    # The main job sets up Airflow's own variables for the embedded default (AIRFLOW_HOME and the
    # source connection) before it starts Airflow: a write for Airflow, not a read of a setting.
    assert readers == {"ctpipe.local_run": readers.get("ctpipe.local_run", [])}
    assert len(readers.get("ctpipe.local_run", [])) == 2
    for path in [*(ROOT / "dags").glob("*.py"), *(ROOT / "feature_repo").glob("*.py")]:
        assert environment_reads(path) == [], path


def sys_state_uses(path: Path) -> list[str]:
    """``sys.path`` and ``sys.modules`` as the code of ``path`` uses them."""
    return [
        f"sys.{node.attr}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr in ("path", "modules")
        and getattr(node.value, "id", "") == "sys"
    ]


def test_nothing_loads_the_feature_repo_by_rewriting_sys_path_or_sys_modules():
    for path in [*(ROOT / "dags").glob("*.py"), *(ROOT / "feature_repo").glob("*.py"), PACKAGE / "feature_store.py"]:
        assert sys_state_uses(path) == [], path
    assert sys_state_uses(Path(__file__)) == []  # the probe reads code, not the words of a docstring
