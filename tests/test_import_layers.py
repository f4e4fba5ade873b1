"""xmeta's modules import only downward and never in a circle.

Every ``import``/``from`` statement in ``xmeta/`` counts, lazy ones inside functions included (they
hide a dependency rather than remove it); only ``if TYPE_CHECKING:`` blocks, which never run, are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "xmeta"

# The layer table, lowest first: a module may import its own layer and the layers below it, never one above.
# A module belongs to the longest prefix listed. `arguments` holds the settings dataclasses the library runs
# from (the CLI parses them; `train` and the benchmark take them); `evaluation.metrics` is pure scoring that
# tagging heads and supervised baselines use too. `model.adapt(...)` runs the meta-learned inner loop, so the
# inner loop and adaptation sit below the model classes; meta-training runs sit above them. A component's
# meta-training hooks run steps built on the inner loop (finalising the source bank, folding source prototypes),
# so the component protocol sits above those steps (the inner loop calls components through the model only). `jobs` holds what
# each command runs (adapt, evaluate, predict, ...), on top of everything it calls; `commands` only parses and prints.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation: errors, config, settings", ["xmeta.errors", "xmeta.version", "xmeta.config", "xmeta.trainer_state",
                                              "xmeta.fileio", "xmeta.scoped",
                                              "xmeta.arguments", "xmeta.distributed", "xmeta.coverage",
                                              "xmeta.evaluation.metrics"]),
    ("data, encoders", ["xmeta.data", "xmeta.encoders"]),
    ("model components", ["xmeta.modeling.pooling", "xmeta.modeling.classifier", "xmeta.modeling.inner_rates",
                          "xmeta.modeling.prototype_head", "xmeta.modeling.meta_embedding",
                          "xmeta.modeling.target_view", "xmeta.modeling.source_attention", "xmeta.modeling.source_bank",
                          "xmeta.modeling.routing", "xmeta.modeling.arrow", "xmeta.modeling.generator",
                          "xmeta.modeling.model_card", "xmeta.modeling.language_codes"]),
    ("inner loop", ["xmeta.meta.batch", "xmeta.meta.fomaml"]),
    ("steps on a meta-trained θ", ["xmeta.meta.bank", "xmeta.meta.source_prior", "xmeta.meta.prototype_metric",
                                   "xmeta.meta.source_prototypes"]),
    ("component protocol", ["xmeta.modeling.components"]),
    ("adapt", ["xmeta.adapt"]),
    ("models", ["xmeta.modeling"]),
    ("meta-training", ["xmeta.meta"]),
    ("training runs", ["xmeta.train"]),
    ("evaluation", ["xmeta.evaluation"]),
    ("jobs", ["xmeta.jobs"]),
    ("commands", ["xmeta.commands"]),
    ("cli, package API", ["xmeta.cli", "xmeta.__main__", "xmeta"]),
]


def module_files() -> dict[str, tuple[Path, bool]]:
    """Module name → (file, whether it is a package's ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def runtime_imports(tree: ast.AST):
    """Every import node outside ``if TYPE_CHECKING:`` blocks."""
    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (n for c in child.orelse for n in walk_one(c))
                continue
            yield from walk_one(child)

    def walk_one(node):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from walk(node)

    yield from walk(tree)


def imported_modules(name: str, is_package: bool, node: ast.AST, modules) -> list[str]:
    """The xmeta modules one import node loads (a submodule when ``from pkg import sub`` names one)."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        if node.level:
            package = name.split(".") if is_package else name.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    found = []
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.append(target)
    return found


def import_graph() -> dict[str, list[tuple[str, int]]]:
    """Module → [(imported module, line)]."""
    modules = module_files()
    graph = {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = [(target, node.lineno) for node in runtime_imports(tree)
                       for target in imported_modules(name, is_package, node, modules)]
    return graph


def layer_of(module: str) -> int:
    best, layer = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), index
    assert layer is not None, f"{module} is in no layer: add it to LAYERS"
    return layer


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _ in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in found)


def upward_imports(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    """``file:line → target (layer imports layer)`` for each import of a higher layer."""
    files = {name: path.relative_to(PACKAGE.parent) for name, (path, _) in module_files().items()}
    return sorted({f"{files.get(name, name)}:{line} → {target} ({LAYERS[layer_of(name)][0]} imports "
                   f"{LAYERS[layer_of(target)][0]})"
                   for name, imports in graph.items() for target, line in imports if layer_of(target) > layer_of(name)})


def test_no_upward_imports():
    upward = upward_imports(import_graph())
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_checks_catch_a_cycle_and_an_upward_import():
    """The graph and the checks see what they are meant to (a check that cannot fail proves nothing)."""
    graph = {"xmeta.a": [("xmeta.b", 1)], "xmeta.b": [("xmeta.a", 2)], "xmeta.c": []}
    assert cycles(graph) == [["xmeta.a", "xmeta.b"]]
    assert upward_imports({"xmeta.modeling.base": [("xmeta.cli", 7), ("xmeta.errors", 8)]}) == [
        "xmeta/modeling/base.py:7 → xmeta.cli (models imports cli, package API)"]
    assert layer_of("xmeta.cli") > layer_of("xmeta.modeling.base") > layer_of("xmeta.adapt") > layer_of("xmeta.errors")
    tree = ast.parse("def f():\n    from ..errors import X\nif TYPE_CHECKING:\n    from .base import Y\n")
    nodes = list(runtime_imports(tree))
    assert len(nodes) == 1
    assert imported_modules("xmeta.modeling.base", False, nodes[0], module_files()) == ["xmeta.errors"]
