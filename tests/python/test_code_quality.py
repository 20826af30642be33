"""The house rules, enforced where a contributor runs the tests: ruff, mypy, sqlfluff and the import layers."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed; install the test extras: pip install -e '.[test]'"
    return found


@pytest.mark.parametrize(
    "command",
    [("ruff", "check", "."), ("ruff", "format", "--check", "."), ("mypy",)],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_python_passes(command: tuple[str, ...]) -> None:
    result = run(tool(command[0]), *command[1:])
    assert result.returncode == 0, result.stdout + result.stderr


def test_sql_passes_sqlfluff_with_the_dbt_templater(tmp_path: Path) -> None:
    result = run(tool("sqlfluff"), "lint", "models", "macros", "tests/dbt", "--templater", "dbt")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]


# The import layers, lowest first: a module imports its own layer or a lower one, never a higher one (the capture
# knows nothing of its orchestrator, neither knows the benchmarks).
LAYERS = ("ingestion", "orchestration", "bench")


def import_graph() -> dict[str, set[str]]:
    """Each project module and the project modules it imports anywhere in its body (function-level imports and
    `if TYPE_CHECKING:` blocks count: a loop hidden in a function is still a loop)."""
    files = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import loops: strongly connected groups of more than one module (Tarjan's algorithm)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return found


def test_the_loop_finder_finds_a_loop() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "ingestion.table_store" in graph["ingestion.breaker"]
    assert cycles(graph) == []


def test_no_module_imports_a_higher_layer() -> None:
    def layer(module: str) -> int:
        return LAYERS.index(module.partition(".")[0])

    upward = sorted(
        f"{module} imports {imported}"
        for module, imports in import_graph().items()
        for imported in imports
        if layer(imported) > layer(module)
    )
    assert upward == []


def test_the_root_profiles_file_is_a_link_to_the_profiles_folder() -> None:
    """dbt finds `profiles.yml` in the project root when run there without --profiles-dir, Dagster and the tests in
    `profiles/`: one file, the root's a link to it. An editor that writes the link's target file in its place makes
    two files that drift apart."""
    link = ROOT / "profiles.yml"
    assert link.is_symlink(), "profiles.yml must be a link to profiles/profiles.yml, not a copy"
    assert link.readlink() == Path("profiles") / "profiles.yml"
    assert link.resolve() == (ROOT / "profiles" / "profiles.yml").resolve()
