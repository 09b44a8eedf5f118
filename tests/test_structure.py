"""The layering rules of docs/architecture.md, checked on the source tree itself.

Each check scans files, so it fails the moment someone adds SQL outside the store, an import
cycle, or a Kivy/torch import to the core; each also proves on a known case that its detector
finds what it looks for, so a broken pattern cannot pass silently.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "appliance" / "store"

# SQL keywords as statements start (upper case, followed by what a statement needs), and the
# DB-API calls that run them. UI text such as "Select an image" does not match.
SQL = re.compile(
    r"\b(SELECT\s+(DISTINCT\s+)?[\w*(]|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s"
    r"|DELETE\s+FROM\s|CREATE\s+(UNIQUE\s+)?(TABLE|INDEX|TRIGGER)\s|DROP\s+(TABLE|INDEX)\s"
    r"|PRAGMA\s+\w)"
    r"|\.(execute|executemany|executescript)\(|\bimport\s+sqlite3\b"
)


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def sql_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), start=1)
        if SQL.search(line)
    ]


def test_the_sql_detector_finds_the_stores_sql() -> None:
    found = sql_lines(STORE / "project.py")
    assert any("INSERT INTO labels" in line for line in found)
    assert any("SELECT" in line for line in found)
    assert not SQL.search('Label(text="Select an image to start")')


# The lab server's own database (lab.db or PostgreSQL, never a project.db) has its one
# data-access module, the server-side counterpart of appliance/store/ (docs/sync.md).
LAB_STORE = ROOT / "export" / "lab" / "store.py"


def test_no_sql_outside_the_store() -> None:
    """Every statement on project.db lives in appliance/store/ (docs/store.md)."""
    offenders = [
        line
        for path in sources("appliance", "export")
        if STORE not in path.parents and path != LAB_STORE
        for line in sql_lines(path)
    ]
    assert not offenders, "SQL outside appliance/store/:\n" + "\n".join(offenders)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Modules `path` imports anywhere (top level or inside functions), TYPE_CHECKING included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports (names resolved to existing modules)."""
    modules = {module_name(p): p for p in sources(package)}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports(path) if m in modules and m != name}
    return graph


def layer(module: str) -> str:
    """The unit the acyclic rule is about: a subpackage (appliance.assist) or a top module."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for src, dsts in graph.items():
        edges = out.setdefault(layer(src), set())
        edges.update(layer(d) for d in dsts if layer(d) != layer(src) and layer(d) != "appliance")
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_the_cores_packages() -> None:
    """appliance.store, .bundles, .assist, .cli, .ui ... import each other one way only."""
    graph = layer_graph(import_graph("appliance"))
    assert graph["appliance.bundles"] and graph["appliance.assist"]  # the graph was read
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_the_core_imports_no_kivy_and_no_torch() -> None:
    core = [p for p in sources("appliance") if "ui" not in p.relative_to(ROOT).parts[1:2]]
    assert any(p.name == "project.py" for p in core)
    offenders = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in core
        for m in sorted(imports(p))
        if m.split(".")[0] in ("kivy", "torch", "export")
    ]
    assert not offenders, "the core imports the UI or workstation stack:\n" + "\n".join(offenders)


def test_the_session_package_is_core_and_kivy_free() -> None:
    """appliance.session holds the annotate flow the UI draws: it is core, so no Kivy in it."""
    session = [p for p in sources("appliance") if p.relative_to(ROOT).parts[1:2] == ("session",)]
    assert {p.name for p in session} >= {"presenter.py", "workflow.py", "viewport.py"}
    offenders = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in session
        for m in sorted(imports(p))
        if m.split(".")[0] in ("kivy", "torch")
    ]
    assert not offenders, "appliance.session must stay Kivy-free:\n" + "\n".join(offenders)
    left = [
        p.name
        for p in sources("appliance/ui")
        if p.name != "__init__.py" and not any(m.split(".")[0] == "kivy" for m in imports(p))
    ]
    assert not left, f"Kivy-free modules left in appliance/ui (move to appliance/session): {left}"


def test_bench_imports_no_tests() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in sources("bench")
        for m in sorted(imports(p))
        if m.split(".")[0] == "tests"
    ]
    assert not offenders, "bench/ imports test code:\n" + "\n".join(offenders)


def core_modules() -> list[str]:
    """Every module of the core (not the Kivy UI), by dotted name."""
    return [
        module_name(p)
        for p in sources("appliance")
        if "ui" not in p.relative_to(ROOT).parts[1:2] and p.name != "__main__.py"
    ]


def test_every_public_core_module_declares_all() -> None:
    """`__all__` says what a module offers; every name in it must exist."""
    lacking, unknown = [], []
    for name in core_modules():
        module = importlib.import_module(name)
        public = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == name
        ]
        if not hasattr(module, "__all__"):
            if public:
                lacking.append(name)
            continue
        unknown += [f"{name}.{n}" for n in module.__all__ if not hasattr(module, n)]
    assert not lacking, f"modules without __all__: {lacking}"
    assert not unknown, f"__all__ names that do not exist: {unknown}"


# The core's layers, lowest first: a module imports only from layers below its own
# (docs/architecture.md). A new module goes into the lowest layer above everything it imports.
LAYERS: list[set[str]] = [
    {"appliance.errors", "appliance.durable"},
    {
        "appliance.imageio",
        "appliance.labels",
        "appliance.perturb",
        "appliance.contract",
        "appliance.metrics",
        "appliance.security",  # signatures, pinned keys, credentials outside the project
    },
    {"appliance.editing", "appliance.store", "appliance.settings", "appliance.media"},
    {"appliance.overlay", "appliance.importer"},
    {"appliance.label_io", "appliance.assist", "appliance.generators"},
    {"appliance.bundles"},
    {"appliance.sync", "appliance.supervision"},  # sync installs pulled model bundles
    {"appliance.session"},  # the annotate flow without Kivy
    {"appliance.ui"},
    {"appliance.cli"},  # `appliance run` starts the UI
    {"appliance.__main__"},
]


def rank(unit: str) -> int | None:
    return next((k for k, layer in enumerate(LAYERS) if unit in layer), None)


def test_every_core_module_imports_only_lower_layers() -> None:
    graph = layer_graph(import_graph("appliance"))
    unplaced = sorted(u for u in graph if u != "appliance" and rank(u) is None)
    assert not unplaced, f"put these in a layer of LAYERS (and docs/architecture.md): {unplaced}"
    upward = [
        f"{src} imports {dst}"
        for src, dsts in graph.items()
        if src != "appliance"
        for dst in dsts
        if (rank(dst) or 0) >= (rank(src) or 0)
    ]
    assert not upward, "imports that go up or sideways:\n" + "\n".join(sorted(upward))
