"""The shape of the code base: no import circles in ``pybrid/``, no module over 420 lines.

The import graph is read from the source with :mod:`ast` (every ``import`` and ``from … import``
naming a ``pybrid`` module, those under ``if TYPE_CHECKING:`` and inside functions included), so
a circle hidden behind a deferred or type-only import fails here too.  ``from pkg import name``
counts as an import of ``pkg.name`` when that is a module, else of ``pkg``.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pybrid"
MAX_LINES = 420
GENERATED = {"pybrid.proto.pybrid_pb2"}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, pathlib.Path]:
    found = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: path for name, path in found.items() if name not in GENERATED}


def imports_of(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        deps.update(t for t in targets if t in known and t != name)
    return deps


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_real_imports():
    graph = import_graph()
    assert "pybrid.proxy.data.router" in graph["pybrid.proxy.service"]
    assert "pybrid.wire.framing" in graph["pybrid.proxy.clients.sender"]


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_pybrid():
    assert cycles(import_graph()) == []


def test_no_module_is_over_420_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_the_proxy_top_level_holds_at_most_8_modules():
    top = sorted(p.name for p in (PACKAGE / "proxy").glob("*.py"))
    assert len(top) <= 8, top


def test_nothing_outside_the_proxy_imports_it():
    """The proxy is an application: libraries (client, monitor, wire …) never import it."""
    outside = {name: sorted(d for d in deps if d.startswith("pybrid.proxy"))
               for name, deps in import_graph().items() if not name.startswith("pybrid.proxy")}
    assert {name: deps for name, deps in outside.items() if deps} == {}


#: (writer, reader, the byte format both use): formats shared by two ends live in pybrid.wire.
SHARED_FORMATS = [
    ("pybrid.proxy.taps.multicast", "pybrid.monitor.listener", "pybrid.wire.monitor_header"),
    ("pybrid.proxy.taps.shm.feed", "pybrid.monitor.shm", "pybrid.wire.shm_frames"),
    ("pybrid.proxy.data.router", "pybrid.client.fastdata", "pybrid.wire.layout"),
]


def test_formats_shared_by_writer_and_reader_live_in_pybrid_wire():
    graph = import_graph()
    for writer, reader, fmt in SHARED_FORMATS:
        assert fmt.startswith("pybrid.wire.") and fmt in graph
        assert fmt in graph[writer] and fmt in graph[reader], (writer, reader, fmt)
    stray = sorted(n for n in graph if n.rpartition(".")[2] in {"header", "frames", "layout"}
                   and not n.startswith("pybrid.wire."))
    assert stray == [], "a byte format outside pybrid.wire"


#: Who may reach into a tap's own modules: the proxy's wiring, its options, its status record.
TAP_USERS = {"pybrid.proxy.service", "pybrid.proxy.plugin", "pybrid.proxy.status.model"}


def test_taps_live_in_pybrid_proxy_taps_behind_one_interface():
    """Every way out besides the clients is a module under pybrid/proxy/taps/ that the router
    reaches only through pybrid.proxy.taps.base (its RunTap events)."""
    graph = import_graph()
    tap_modules = {n for n in graph if n.startswith("pybrid.proxy.taps.")}
    assert {"pybrid.proxy.taps.base", "pybrid.proxy.taps.multicast",
            "pybrid.proxy.taps.shm.feed"} <= tap_modules
    reaching = {name: sorted(d for d in deps
                             if d in tap_modules and d != "pybrid.proxy.taps.base")
                for name, deps in graph.items()
                if name not in tap_modules and name not in TAP_USERS}
    assert {name: deps for name, deps in reaching.items() if deps} == {}
    # a class with the tap events (run_started and chunk) is a tap: it lives there
    stray = []
    for name, path in modules().items():
        if name in tap_modules:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
                if {"run_started", "chunk"} <= methods:
                    stray.append(f"{name}.{node.name}")
    assert stray == []
