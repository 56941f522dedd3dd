"""The import graph of benchmark/ and baselines/ (issue 12): no cycle anywhere, no module
imports a higher layer (docs/ARCHITECTURE.md), and the engine never imports the papers' models. Imports inside functions count too: a lazy import is still a
dependency. Parsed from the source, nothing imported."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("benchmark", "baselines")
# Layers, bottom to top (docs/ARCHITECTURE.md): a module may import its own layer and below.
LAYERS = [
    ("benchmark", "benchmark.errors", "benchmark.registry"),
    ("benchmark.faces",),
    ("benchmark.contracts",),
    ("benchmark.models", "benchmark.metrics", "benchmark.degradations", "benchmark.datasets",
     "benchmark.evaluators", "benchmark.tasks"),
    ("benchmark.engine",),
    ("benchmark.reporting", "benchmark.training"),
    ("benchmark.cli",),
    ("baselines",),
]


def layer_of(module: str) -> int:
    """The layer of the longest matching prefix (``benchmark`` itself is the base)."""
    best, rank = "", None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, rank = p, i
    return rank


def module_files():
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def import_graph():
    files = module_files()
    graph = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_benchmark_or_baselines():
    graph = import_graph()
    assert len(graph) > 60  # the walker sees the whole tree
    assert cycles(graph) == []


def test_the_engine_never_imports_the_papers_models():
    upward = {(m, t) for m, targets in import_graph().items() if m.startswith("benchmark")
              for t in targets if t.startswith("baselines")}
    assert upward == set()


def test_the_layer_map_knows_the_layers():
    assert layer_of("benchmark.engine.runner") == 4 and layer_of("benchmark.errors") == 0
    assert layer_of("benchmark.faces.images") == 1 and layer_of("baselines.csrip") == 7
    assert layer_of("benchmark.contracts.model") == 2 and layer_of("benchmark.metrics.image") == 3


def test_no_module_imports_a_higher_layer():
    graph = import_graph()
    assert all(layer_of(m) is not None for m in graph), [m for m in graph if layer_of(m) is None]
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                    if layer_of(t) > layer_of(m))
    assert upward == []
