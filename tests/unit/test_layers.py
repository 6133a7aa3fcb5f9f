"""The package's import graph is one-way: no cycle, and no module imports from a layer above its own.

Walks every module under pipeline/trtpipe with `ast` (module-level and function-level imports alike; only
`if TYPE_CHECKING:` blocks, which never run, are skipped) and checks each import of a trtpipe module against
LAYERS, bottom first. A module may import from its own layer or any layer below.

The one run-time lookup that is not an import statement is backend_registry.py's get_backend, which loads a
backend's module by name (its docstring says why); it is checked here as importing nothing above itself, which
is what keeps the bottom layers free of the backends' dependencies.

Modules in one layer may import each other, so the layers alone do not rule out packages that import each
other (a.x -> b.y and b.z -> a.w); test_no_import_cycle_between_packages checks the graph grouped by package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "pipeline"

# Bottom first. Each entry is a module or package prefix; the longest matching prefix decides a module's layer.
LAYERS: list[tuple[str, ...]] = [
    ("trtpipe.errors", "trtpipe.__init__"),
    # The name -> backend-module table, each backend's capabilities and the config check over them: no trtpipe
    # import but errors (the interface, base.py, sits with the backends).
    ("trtpipe.backend_registry",),
    ("trtpipe.config",),
    # Data and arithmetic everything above reads: GPUs, the serving spec, file hashes, cache, manifest, the reference
    # engine.
    ("trtpipe.hardware", "trtpipe.spec", "trtpipe.integrity", "trtpipe.cache", "trtpipe.manifest", "trtpipe.preflight", "trtpipe.engine",
     "trtpipe.data"),
    # Stage and step types, fetch, and the capacity arithmetic (it reads the synthetic checkpoints' shapes).
    ("trtpipe.stages", "trtpipe.capacity"),
    # TensorRT-LLM recipes: commands, LLM API arguments, engine-dir checks, machine preflight.
    ("trtpipe.trt",),
    # Model-repository writers.
    ("trtpipe.repo",),
    # What runs inside Triton's Python backend behind <model>-engine.
    ("trtpipe.python_models",),
    # serve/ in four rooms, imports one way: process -> api -> openai -> engine_client. The two modules every room
    # may use (OpenAI wire types, the closed error set) sit below them; engine_client imports nothing else from
    # trtpipe (test_the_engine_client_imports_nothing_else_from_trtpipe).
    ("trtpipe.serve.__init__", "trtpipe.serve.protocol", "trtpipe.serve.errors"),
    ("trtpipe.serve.engine_client",),
    ("trtpipe.serve.openai",),
    ("trtpipe.serve.api",),
    ("trtpipe.serve.process",),
    # trtpipe on NVIDIA Dynamo (issue 23): a worker beside serve/, on the engine and the repository; its one-host
    # stack reuses serve/process's supervision. Nothing in serve/ imports it.
    ("trtpipe.dynamo",),
    # One module per backend, composing everything below; the gate they run.
    ("trtpipe.backends.__init__", "trtpipe.backends.base", "trtpipe.backends.reference", "trtpipe.backends.tensorrt_engine",
     "trtpipe.backends.tensorrt_llm_pytorch", "trtpipe.gate"),
    # Deployments of published versions beyond one host (Dynamo's operator); the planner prints their sizing.
    ("trtpipe.deploy",),
    # Entry points: the build, its dry run, the planner, nightly, bench, the GPU-machine doctor.
    ("trtpipe.build", "trtpipe.dry_run", "trtpipe.plan", "trtpipe.plan_report", "trtpipe.plan_baseline",
     "trtpipe.plan_api", "trtpipe.nightly", "trtpipe.bench",
     "trtpipe.demo", "trtpipe.doctor", "trtpipe.doctor_checks"),
    # The command line: the click group and its commands (one module per command group, with their shared options).
    ("trtpipe.cli", "trtpipe.__main__", "trtpipe.commands"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] + ["__init__"] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((ROOT / "trtpipe").rglob("*.py"))}


def layer_of(module: str) -> int:
    best, layer = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), index
    if layer is None:
        raise AssertionError(f"{module} is on no layer: add it to LAYERS in {__file__}")
    return layer


def _resolve(name: str) -> str | None:
    """An imported dotted name -> the trtpipe module that defines it (a package means its __init__)."""
    while name:
        if name in MODULES:
            return name
        if f"{name}.__init__" in MODULES:
            return f"{name}.__init__"
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    package = module.rpartition(".")[0] if not module.endswith("__init__") else module[: -len(".__init__")]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            names = []
        for name in names:
            if name.startswith("trtpipe"):
                target = _resolve(name)
                if target and target != module:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found  # `from trtpipe.x import y` counts trtpipe.x's __init__ too: importing y runs it


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_is_on_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
              for m, targets in GRAPH.items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def walk(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if state.get(target) is None:
                walk(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            walk(module)


def test_the_checker_sees_function_level_imports_and_skips_type_checking_blocks():
    # build.py imports the registry at module level; trt/preflight.py imports capacity inside a function;
    # backend_registry.py names backends.base only under TYPE_CHECKING.
    assert "trtpipe.backend_registry" in GRAPH["trtpipe.build"]
    assert "trtpipe.capacity" in GRAPH["trtpipe.trt.preflight"]
    assert "trtpipe.backends.base" not in GRAPH["trtpipe.backend_registry"]


def test_the_engine_client_imports_nothing_else_from_trtpipe():
    room = "trtpipe.serve.engine_client"
    outside = [f"{m} -> {t}" for m, targets in GRAPH.items() if m.startswith(room + ".")
               for t in sorted(targets) if not t.startswith(room + ".")]
    assert outside == []


def package_of(module: str) -> str:
    """The unit the package-level check groups by: a module in a subpackage belongs to that subpackage
    (trtpipe.serve.api.app -> trtpipe.serve.api), a top-level module is its own unit (trtpipe.config)."""
    parts = module.split(".")
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts) if len(parts) > 1 else "trtpipe"
    return ".".join(parts[:-1]) if len(parts) > 2 else module


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (node -> nodes it imports) as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if state.get(target) is None and (found := walk(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def package_graph(module_graph: dict[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph.items():
        edges = graph.setdefault(package_of(module), set())
        edges.update(package_of(t) for t in targets if package_of(t) != package_of(module))
    return graph


def test_no_import_cycle_between_packages():
    cycle = find_cycle(package_graph(GRAPH))
    assert cycle is None, "package import cycle: " + " -> ".join(cycle)


def test_the_package_check_finds_a_cycle_that_the_module_graph_does_not_have():
    # serve.api.app -> serve.openai.validation is real; one import back from another openai module to another
    # api module closes a cycle between the two packages, though no module-level cycle exists.
    graph = {m: set(t) for m, t in GRAPH.items()}
    graph["trtpipe.serve.openai.text"].add("trtpipe.serve.api.metrics")
    assert find_cycle(graph) is None
    cycle = find_cycle(package_graph(graph))
    assert cycle is not None and {"trtpipe.serve.api", "trtpipe.serve.openai"} <= set(cycle)
    assert package_of("trtpipe.serve.api.app") == "trtpipe.serve.api" and package_of("trtpipe.config") == "trtpipe.config"
