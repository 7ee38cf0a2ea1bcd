"""The shape of the code: short modules, dependencies pointing one way, no import cycles.

Read from the source (no module is imported), so every import counts wherever it stands: at the
top, inside a function (an import placed there to dodge a cycle is still the cycle), and under
``if TYPE_CHECKING:`` (a cycle only for the type hints is still two modules that each need the
other to be understood; a Protocol where one needs only the other's shape breaks it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "callcenter")
MAX_LINES = 500


def module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project's modules that ``name`` imports anywhere in its source."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            # ``from core import desk`` imports core.desk; ``from core.desk import X`` imports core.desk
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                found.add(candidate)
    return found


def import_graph() -> dict[str, set[str]]:
    known = module_files()
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_graph_sees_imports_inside_functions_and_type_checking_blocks(tmp_path):
    """The reader itself: a cycle hidden in a function or behind TYPE_CHECKING is found."""
    (tmp_path / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n")
    (tmp_path / "c.py").write_text("from . import a\n")
    known = {"pkg.a": tmp_path / "a.py", "pkg.b": tmp_path / "b.py", "pkg.c": tmp_path / "c.py"}
    graph = {name: imported_modules(name, path, known) for name, path in known.items()}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_cycle_among_the_projects_modules():
    graph = import_graph()
    assert len(graph) > 50 and {"core.desk", "callcenter.sip.agent"} <= set(graph)
    assert cycles(graph) == []


def test_core_never_imports_callcenter():
    wrong = {name: sorted(other for other in imports if other.startswith("callcenter"))
             for name, imports in import_graph().items() if name.startswith("core")}
    assert {name: imports for name, imports in wrong.items() if imports} == {}


def test_no_module_over_500_lines():
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in module_files().items()}
    assert {name: lines for name, lines in lengths.items() if lines > MAX_LINES} == {}


def test_no_merge_conflict_markers_are_left_behind():
    """A merge resolved in a hurry once left both sides of a README section in place."""
    import subprocess

    markers = ("<" * 7 + " ", "=" * 7 + "\n", ">" * 7 + " ")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    left = []
    for name in filter(None, tracked.decode().split("\0")):
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".js", ".html", ".css", ".toml", ".sh", ".cfg", ".ini", ".txt"}:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(True), 1):
            if line.startswith(markers):
                left.append(f"{name}:{number}")
    assert not left, left


def test_no_call_flow_imports_sqlalchemy():
    """The telephone side reaches the database only through named methods of core's services
    (``core/*_service.py``, ``core.intake.PhoneDrafts``), each a short transaction returning plain
    facts: no call thread holds a session, and no ORM object outlives the one that loaded it."""
    wrong = {}
    for name, path in module_files().items():
        if not name.startswith("callcenter.ivr"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            wrong.setdefault(name, []).extend(n for n in names if n.split(".")[0] == "sqlalchemy")
    assert {name: found for name, found in wrong.items() if found} == {}
