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


def absolute(node: ast.ImportFrom, package: str) -> str:
    """The absolute module name a `from ... import` reads from, inside `package`."""
    base = node.module or ""
    if not node.level:
        return base
    anchor = package.split(".")
    anchor = anchor[: len(anchor) - node.level + 1]
    return ".".join([*anchor, base] if base else anchor)


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
            base = absolute(node, package)
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


def module_edges(path: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that `path` imports, anywhere in it (function bodies and
    TYPE_CHECKING blocks too: a circle through them still couples the two modules).

    `from pkg import sub` is an edge to the submodule `pkg.sub`, not to `pkg/__init__`, the
    way Python resolves it; `from mod import name` is an edge to `mod`.
    """

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(owner(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node, package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in modules else owner(base))
    return out - {"", name}


def test_module_edges_resolve_submodules() -> None:
    """`from appliance.store import oplog` is an edge to oplog, not to the package's
    `__init__` (which imports `project`): otherwise every package would look circular."""
    modules = {module_name(p) for p in sources("appliance")}
    edges = module_edges(STORE / "migrations.py", modules)
    assert "appliance.store.jobs" in edges and "appliance.store" not in edges


def test_no_import_cycle_between_modules() -> None:
    """Two modules that import each other (even inside a function or for type checking only)
    are one module in two files: neither can be read, tested or loaded alone."""
    paths = {module_name(p): p for p in sources("appliance", "export", "bench", "testkit")}
    graph = {name: module_edges(path, set(paths)) for name, path in paths.items()}
    assert graph["appliance.store.project"]  # the graph was read
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_the_connection_stays_in_the_store() -> None:
    """No code outside appliance/store/ reaches for a project's SQLite connection (`.db`):
    callers use the store's typed functions (docs/store.md)."""
    offenders = [
        f"{p.relative_to(ROOT)}:{node.lineno}"
        for p in sources("appliance", "export")
        if STORE not in p.parents and p != LAB_STORE
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "db"
    ]
    assert not offenders, "a project's connection used outside the store:\n" + "\n".join(offenders)


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
    {"appliance.typed"},  # strict JSON types, read by settings, contracts and options
    {
        "appliance.imageio",
        "appliance.labels",
        "appliance.perturb",
        "appliance.contract",
        "appliance.metrics",
        "appliance.security",  # signatures, pinned keys, credentials outside the project
        "appliance.geometry",
        "appliance.slides",
        "appliance.microscope",
    },
    {
        "appliance.editing",
        "appliance.store",
        "appliance.settings",
        "appliance.media",
        "appliance.geojson",
    },
    {"appliance.overlay", "appliance.importer"},
    {"appliance.label_io", "appliance.assist", "appliance.generators"},
    {"appliance.bundles", "appliance.ngff"},
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


ARCHITECTURE = ROOT / "docs" / "architecture.md"


def diagram() -> list[str]:
    """The lines of the package diagram that opens docs/architecture.md (its first block)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("```text\n", 1)[1].split("```", 1)[0]
    assert text.index("```text") < text.index("\n## "), "the page must open with the diagram"
    return block.splitlines()


def diagram_layers(lines: list[str]) -> list[set[str]]:
    """`  7  sync  supervision     description` rows, lowest layer first."""
    rows = [re.match(r"^\s+(\d+)\s+(.+)$", line) for line in lines]
    layers = {int(m[1]): re.split(r"\s{3,}", m[2].strip())[0].split() for m in rows if m}
    return [{f"appliance.{n}" for n in layers[k]} for k in sorted(layers)]


def diagram_export(lines: list[str]) -> tuple[set[str], set[str]]:
    """(packages, modules) the diagram names under `export/`."""
    section = lines[next(i for i, line in enumerate(lines) if line.startswith("export/")) :]
    section = section[1 : next(i for i, line in enumerate(section[1:], 1) if line[:1] != " ")]
    packages = {t[:-1] for line in section if "packages:" in line for t in line.split()[1:]}
    words = " ".join(section).split("modules:", 1)[1].split()
    return packages, set(words)


def test_the_diagram_matches_the_tree_and_the_layers() -> None:
    lines = diagram()
    assert diagram_layers(lines) == LAYERS
    packages, modules = diagram_export(lines)
    export = ROOT / "export"
    assert packages == {p.parent.name for p in export.glob("*/__init__.py")}
    assert modules == {p.stem for p in export.glob("*.py")} - {"__init__", "__main__"}
    named = {line.split()[0] for line in lines if line[:1].isalpha()}
    assert named == {"appliance/", "export/", "bench/", "testkit/"}
    assert all((ROOT / n).is_dir() for n in named)


def test_the_diagram_reader_notices_a_missing_package() -> None:
    """A package left out of (or invented in) the diagram fails the test above."""
    lines = [line.replace("  metrics", "") for line in diagram()]
    assert diagram_layers(lines) != LAYERS
    lines = [line.replace("bundle/", "bundles/") for line in diagram()]
    assert diagram_export(lines)[0] != {"train", "generators", "lab", "bundle"}
