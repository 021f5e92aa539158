"""The package's shape: no import cycles, a core that never imports the CLI, a torch-free start,
and no function over 60 lines."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "eseg"
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """The eseg modules an import statement loads (function-level imports included)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in MODULES]
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    target = node.module if node.level == 0 else ".".join(p for p in (base, node.module) if p)
    found = [target] if target in MODULES else []
    found += [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(resolve(name, node, path.name == "__init__.py"))
        graph[name] = {e for e in edges if e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_anywhere_in_the_package():
    graph = import_graph()
    assert len(graph) > 60 and graph["eseg.cli.train"]  # the graph really was read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_never_imports_the_command_line():
    offenders = {name: sorted(e for e in edges if e == "eseg.cli" or e.startswith("eseg.cli."))
                 for name, edges in import_graph().items() if not (name == "eseg.cli" or name.startswith("eseg.cli."))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_function_over_60_lines():
    long = []
    for path in [*PACKAGE.rglob("*.py"), *(SRC.parent / "benchmarks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


HELP_PROBE = """
import contextlib, io, json, sys
from eseg.cli import SUBCOMMANDS, main
for argv in [["--help"]] + [[name, "--help"] for name in SUBCOMMANDS]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
print(json.dumps(sorted(m for m in ("torch", "timm", "torchvision", "numpy") if m in sys.modules)))
"""


def test_help_of_every_command_imports_neither_torch_nor_timm():
    result = subprocess.run([sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("name", ["eseg.models.registry", "eseg.models.summary", "eseg.data.specs", "eseg.config",
                                  "eseg.loss_spec", "eseg.rundir", "eseg.runtimes", "eseg.benchmark.peers"])
def test_registries_and_tables_are_torch_free(name):
    probe = f"import sys, {name}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize("script", sorted(p.name for p in (SRC.parent / "benchmarks").glob("*.py")))
def test_every_benchmark_script_imports(script):
    """The scripts docs quote must keep working with the package as it is now."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_script_{script[:-3]}", SRC.parent / "benchmarks" / script)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def imported_by(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every eseg module ``start`` may import, directly or through others (function-level included)."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph.get(name, ())
    return seen


def test_the_config_never_reaches_the_engine():
    reached = imported_by(import_graph(), "eseg.config")
    assert {"eseg.schema", "eseg.models.registry", "eseg.data.specs"} <= reached  # the graph really was followed
    assert sorted(m for m in reached if m == "eseg.engine" or m.startswith("eseg.engine.")) == []


CONFIG_PROBE = """
import json, sys
from eseg.config import load_config
cfg = load_config(None, ["model.name=eseg_lite_s", "model.fpn_width=24", "data.dataset={type: folder, root: /d}",
                         "train.loss=[{type: cross_entropy, ohem: true}, {type: dice}, {type: focal}, {type: lovasz}]"])
assert cfg.train.loss[3] == {"type": "lovasz"}
print(json.dumps(sorted(m for m in sys.modules if m in ("torch", "timm") or m.startswith("eseg.engine"))))
"""


def test_loading_and_checking_a_config_imports_neither_torch_nor_the_engine():
    result = subprocess.run([sys.executable, "-c", CONFIG_PROBE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
