"""How the lab's packages import one another, read from their source with no Docker: the layers one way
(server <- clients <- lab), no import cycle among the lab's modules, and no shared module that imports a
particular experiment or strategy: shared code finds those through their registries."""
import ast

import pytest

from conftest import REPO

pytestmark = pytest.mark.fast

# The layers, lowest first: a module may import its own layer and those below it.
LAYERS = ("server", "clients", "lab")
# What imports particular experiments or strategies by design: the experiments themselves, the strategies'
# registry (its PUBLISHED order) and the benchmarks, which each measure one server.
PARTICULAR = ("lab.experiments.", "lab.bench.", "server.strategies")


def imports(layer="lab"):
    """{module: the modules of this repo it imports}, function-level imports too, for every module of
    `layer`; importing lab.a.b imports the packages lab.a and lab as well (but a module's own packages are
    imported before it, not by it)."""
    files = {}
    for path in [p for top in LAYERS for p in (REPO / top).rglob("*.py")]:
        parts = path.relative_to(REPO).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def nearest(name):
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in files.items():
        if module != layer and not module.startswith(layer + "."):
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # from . import x, from ..records import y
                    parts = package.split(".")
                    base = ".".join([*parts[:len(parts) - node.level + 1], *filter(None, [base])])
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            for name in map(nearest, names):
                if name:
                    targets.add(name)
                while name:
                    name = nearest(name.rpartition(".")[0])
                    if name and not module.startswith(name + "."):
                        targets.add(name)
        graph[module] = targets - {module}
    return graph


def cycle(graph):
    """An import cycle [a, b, ..., a], or None."""
    state, path = {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph.get(module, ())):  # another layer: below this one, so no cycle through it
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state and (found := visit(imported)):
                return found
        state[module] = "done"
        path.pop()
        return None

    return next((found for module in sorted(graph) if module not in state and (found := visit(module))), None)


def test_the_lab_modules_import_one_another_without_a_cycle():
    graph = imports("lab")
    assert "lab.experiments.convoy" in graph["lab.experiments.prefork_lockout"]  # the graph sees imports
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_only_the_experiments_import_a_particular_experiment():
    graph = imports("lab")
    outside = {module: sorted(name for name in imported if name.startswith("lab.experiments."))
               for module, imported in graph.items() if not module.startswith("lab.experiments")}
    assert not {module: names for module, names in outside.items() if names}


def test_each_layer_imports_only_itself_and_the_layers_below():
    for layer in LAYERS:
        above = LAYERS[LAYERS.index(layer) + 1:]
        wrong = {module: sorted(name for name in imported if name.split(".")[0] in above)
                 for module, imported in imports(layer).items()}
        assert imports(layer) and not {module: names for module, names in wrong.items() if names}, layer


def test_no_shared_module_imports_a_particular_strategy():
    strategies = {module for module in imports("server") if module.startswith("server.strategies.")}
    found = {module: sorted(imported & strategies) for layer in LAYERS for module, imported in imports(layer).items()
             if not module.startswith(PARTICULAR)}
    assert strategies and not {module: names for module, names in found.items() if names}
