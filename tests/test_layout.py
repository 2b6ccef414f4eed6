"""The SDK's layout shows the architecture: one folder per stage of the loop, imports pointing one way.

Every ``import`` under ``sdk/inkloop`` (module level, inside functions and under ``TYPE_CHECKING``
alike) is read with :mod:`ast` and turned into a graph of modules; the tests then check that

- no two modules import each other, directly or through others (no cycles);
- a stage imports only from its own layer and the layers before it (``LAYERS``, the order
  documented in ``docs/README.md``): peers in one layer may import each other as long as no cycle
  forms between their folders;
- research scripts stay out of the installed package, and the provider and DAGs use the SDK
  (never the other way round).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "sdk"
PACKAGE = SDK / "inkloop"

#: Stages in import order: a module may import from its own layer and the ones before it.
LAYERS: list[set[str]] = [
    # storage: local folders and URLs alike
    # retry: waiting and backing off; net: free ports and the one HTTP client
    # geometry: box IoU, matching, clipping
    {"types", "convert", "privacy", "processes", "retry", "net", "storage", "geometry"},
    {"documents", "datasets"},  # datasets: YOLO data.yaml, image suffixes, the data version
    {"models"},
    {"detection"},
    {"routing"},  # runs on detection's results; detection asks it for page scores through a Protocol
    {"evaluation", "verdict"},  # verdict: signing places + the detector's ink → a document verdict
    # synth: born-digital pages, on verdict places; api: the one detection entry point and the
    # public names, which "" (the package itself, ``inkloop/__init__.py``) re-exports lazily
    {"review", "curation", "lifecycle", "synth", "api", ""},
    {"benchmarks"},
    {"serving"},  # the Triton server, the model repository, the browser demo (own processes)
    {"cli", "devservers", "__main__"},
]
RANK = {stage: i for i, layer in enumerate(LAYERS) for stage in layer}
RESEARCH = {"bundle", "model_compare", "stretched", "synthetic", "routing_eval"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SDK).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sdk_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, name: str, known: set[str]) -> Iterator[str]:
    """The ``inkloop`` modules that ``path`` (module ``name``) imports, resolved to known modules."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # ``from pkg import submodule`` imports the submodule; ``from mod import name`` the module
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.split(".")[0] == "inkloop" and target != name:
                yield target


def module_graph() -> dict[str, set[str]]:
    modules = sdk_modules()
    known = set(modules)
    return {name: set(imported(path, name, known)) for name, path in modules.items()}


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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


def test_every_module_belongs_to_a_known_stage():
    unknown = sorted({stage(m) for m in sdk_modules()} - set(RANK))
    assert not unknown, f"folders or modules outside the documented stages: {unknown}"


def test_no_import_cycles_between_modules():
    assert cycles(module_graph()) == []


def test_no_import_cycles_between_stage_folders():
    stages: dict[str, set[str]] = {}
    for module, deps in module_graph().items():
        stages.setdefault(stage(module), set()).update(stage(d) for d in deps if stage(d) != stage(module))
    assert cycles(stages) == []


def test_imports_point_one_way():
    upward = sorted(
        f"{module} -> {dep}"
        for module, deps in module_graph().items()
        for dep in deps
        if RANK[stage(dep)] > RANK[stage(module)]
    )
    assert not upward, "imports from a later stage:\n" + "\n".join(upward)


def test_research_scripts_are_not_in_the_package():
    assert not {p.stem for p in PACKAGE.rglob("*.py")} & RESEARCH
    assert {p.stem for p in (ROOT / "tools").glob("*.py")} >= RESEARCH
    assert not list(SDK.rglob("*.pt")) or all("assets" in p.parts for p in SDK.rglob("*.pt"))


@pytest.mark.parametrize("folder", ["plugins", "dags"])
def test_provider_and_dags_use_the_sdk_not_tools(folder):
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in RESEARCH, f"{path.relative_to(ROOT)} imports research script {name}"
                assert not name.startswith(("inkloop.devservers", "inkloop.cli")), (
                    f"{path.relative_to(ROOT)} imports {name}: the provider calls SDK functions"
                )


def test_sdk_does_not_import_the_provider():
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "import inkloop_provider" not in text and "from inkloop_provider" not in text, path
