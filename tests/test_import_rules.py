"""The import contract of ``src/ctstack``, read from the source with ``ast`` (nothing imported):

- layers: ``ctstack.napari._qt`` > ``ctstack.napari`` > the engine (everything else);
- the engine never imports napari, Qt, magicgui, vispy or anywidget (the demo launcher
  ``ctstack._cli.demo`` is the one exception);
- nothing outside ``ctstack/napari/_qt/`` imports Qt or ``_qt``, except the lazy re-exports of
  ``ctstack/napari/__init__.py`` (its module ``__getattr__``);
- no import cycles among the modules of ``src/ctstack``. Imports inside functions count,
  ``if TYPE_CHECKING:`` imports do not, and the root package's lazy re-exports are exempt.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "ctstack"
NAPARI = "ctstack.napari"
QT_LAYER = "ctstack.napari._qt"
JUPYTER = "ctstack.jupyter"  # the Jupyter face: may import the engine and anywidget only
GUI = {"napari", "magicgui", "vispy", "anywidget", "ipywidgets"}
QT = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "magicgui"}
ENGINE_EXCEPTIONS = {"ctstack._cli.demo"}  # the demo launcher starts napari by design


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (as precise as the source says)
    line: int
    lazy: bool  # inside a module-level ``__getattr__`` or a lazy-export table


def module_names() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = module_names()
# compiled modules (ctstack._core): importable names, but outside the source graph
EXTENSIONS = {
    ".".join((*p.relative_to(SRC).parts[:-1], p.name.split(".")[0]))
    for p in (SRC / ROOT).rglob("*")
    if p.suffix in (".so", ".pyd", ".pyi")
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *(node.module.split(".") if node.module else [])])


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, lazy)
            return
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            lazy = True
        if isinstance(node, ast.Import):
            found.extend(Import(module, a.name, node.lineno, lazy) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                known = sub in MODULES or sub in EXTENSIONS
                found.append(Import(module, sub if known else target, node.lineno, lazy))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in MODULES
            and node.value != module
        ):
            # lazy-export tables name modules as strings ("ctstack.napari._qt.session")
            found.append(Import(module, node.value, node.lineno, True))
        for child in ast.iter_child_nodes(node):
            visit(child, lazy)

    visit(tree, False)
    return found


ALL = [imp for module in MODULES for imp in imports_of(module)]


def _top(name: str) -> str:
    return name.split(".")[0]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _show(bad: list[Import]) -> str:
    return "\n".join(f"{i.source}:{i.line} imports {i.target}" for i in bad)


def test_the_parser_sees_the_known_imports():
    """Guard the guard: relative, function-level and lazy imports are all found."""
    pairs = {(i.source, i.target) for i in ALL}
    assert ("ctstack.napari._qt.build", "ctstack.napari._layer") in pairs  # relative
    assert ("ctstack.napari._qt.build", "ctstack.pyramid") in pairs  # inside a function
    assert ("ctstack.napari", "ctstack.napari._qt.session") in pairs  # lazy re-export
    assert ("ctstack.napari._qt.panel", "qtpy.QtWidgets") in pairs
    assert not any(i.source == "ctstack.roi" and i.target == "ctstack.stack" for i in ALL)
    assert ("ctstack._backend", "ctstack._core") in pairs  # an extension, not the package


def test_engine_imports_no_gui():
    bad = [
        i
        for i in ALL
        if not _within(i.source, NAPARI)
        and not _within(i.source, JUPYTER)
        and i.source not in ENGINE_EXCEPTIONS
        and (_top(i.target) in GUI | QT or _within(i.target, NAPARI))
    ]
    assert not bad, "the engine must not import napari, Qt or the napari face:\n" + _show(bad)


def test_jupyter_face_imports_no_napari_or_qt():
    """ctstack.jupyter stands on the engine and anywidget: no napari, Qt or napari face."""
    banned = (GUI | QT) - {"anywidget", "ipywidgets"}
    bad = [
        i
        for i in ALL
        if _within(i.source, JUPYTER) and (_top(i.target) in banned or _within(i.target, NAPARI))
    ]
    assert not bad, "the Jupyter face must not import napari or Qt:\n" + _show(bad)


def test_engine_never_imports_the_jupyter_face():
    """Only the root package's lazy ``view`` re-export names ctstack.jupyter."""
    bad = [
        i
        for i in ALL
        if not _within(i.source, JUPYTER)
        and _within(i.target, JUPYTER)
        and not (i.source == ROOT and i.lazy)
    ]
    assert not bad, "the engine must not import ctstack.jupyter:\n" + _show(bad)


def test_only_qt_layer_imports_qt():
    bad = [
        i
        for i in ALL
        if not _within(i.source, QT_LAYER)
        and i.source not in ENGINE_EXCEPTIONS
        and (_top(i.target) in QT or _within(i.target, QT_LAYER))
        and not (i.source == NAPARI and i.lazy)  # ctstack.napari's lazy re-exports
    ]
    assert not bad, "only ctstack.napari._qt may import Qt or _qt:\n" + _show(bad)


def test_lazy_qt_re_exports_are_only_lazy():
    """ctstack.napari reaches _qt only inside __getattr__ or through its lazy-export table."""
    eager = [i for i in ALL if i.source == NAPARI and _within(i.target, QT_LAYER) and not i.lazy]
    assert not eager, _show(eager)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges.get(v, ()):
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def _path(edges: dict[str, set[str]], group: list[str]) -> str:
    """One cycle through the group, for the failure message."""
    members = set(group)
    start = group[0]
    seen = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(edges.get(v, ())):
            if w == start:
                return " -> ".join([*seen[v], start])
            if w in members and w not in seen:
                seen[w] = [*seen[v], w]
                todo.append(w)
    return " <-> ".join(group)


def import_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in ALL:
        if i.target in MODULES and i.target != i.source:
            if i.source == ROOT and i.lazy:
                continue  # the root package's lazy re-exports are exempt
            edges[i.source].add(i.target)
    return edges


@pytest.mark.parametrize(
    "layer",
    [
        "engine",
        "napari face",
    ],
)
def test_no_import_cycles(layer):
    edges = import_graph()
    cycles = [
        g for g in _cycles(edges) if any(_within(m, NAPARI) for m in g) == (layer == "napari face")
    ]
    assert not cycles, "import cycles:\n" + "\n".join(_path(edges, g) for g in cycles)


def test_gui_and_worker_code_leaves_the_warnings_filter_alone():
    """The napari face and the batch/export/mesh workers hear a stack's notes through
    ``open_stack(report=...)``; none of them mutates the process-wide warnings filter."""
    owned = [m for m in MODULES if _within(m, NAPARI)] + [
        "ctstack.batch",
        "ctstack._mesh",
        "ctstack.roi",
        "ctstack.viewmodel",
        "ctstack.windows",
        "ctstack._export",
        "ctstack._cli.export",
        "ctstack._cli.mesh",
    ]
    banned = {"catch_warnings", "simplefilter", "filterwarnings", "resetwarnings", "filters"}
    bad = []
    for module in owned:
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in banned
                and isinstance(node.value, ast.Name)
                and node.value.id == "warnings"
            ):
                bad.append(f"{module}:{node.lineno} uses warnings.{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module == "warnings":
                bad.extend(
                    f"{module}:{node.lineno} imports warnings.{a.name}"
                    for a in node.names
                    if a.name in banned
                )
    assert not bad, "\n".join(bad)


CLUSTER = "ctstack._cluster"  # cluster builds and exports: an optional extra (distributed)
CLUSTER_USERS = {"ctstack.stack", "ctstack._export", "ctstack._cli.pyramid", "ctstack._cli.export"}


def _module_level_imports(module: str) -> set[str]:
    """Top-level names a module imports when it is loaded (not in functions or TYPE_CHECKING)."""
    found: set[str] = set()
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.Import):
                found.update(_top(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                found.add(_top(node.module or ""))
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for block in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, block, []):
                        visit(getattr(child, "body", None) or [child])

    visit(tree.body)
    return found


def test_cluster_layering():
    """``distributed`` is loaded only inside the functions of ctstack._cluster that talk to a
    cluster (``import ctstack`` and the core CLI work without it); _cluster stands on the engine
    (no face imports it but the CLI, and it imports no face); the engine reaches it only from
    the ``client=`` entry points."""
    eager = [m for m in MODULES if "distributed" in _module_level_imports(m)]
    assert not eager, f"modules importing distributed when loaded: {eager}"
    outside = [i for i in ALL if _top(i.target) == "distributed" and not _within(i.source, CLUSTER)]
    assert not outside, _show(outside)
    faces = [
        i
        for i in ALL
        if _within(i.source, CLUSTER)
        and any(_within(i.target, f) for f in (NAPARI, JUPYTER, "ctstack._cli", "ctstack.cli"))
    ]
    assert not faces, _show(faces)
    users = {i.source for i in ALL if _within(i.target, CLUSTER) and not _within(i.source, CLUSTER)}
    assert users <= CLUSTER_USERS, users - CLUSTER_USERS
