"""The import rules of the code base, written once: here.

Packages stand on floors; a module imports only from its own package or from floors below
it, never from one above, and no module reaches itself through a chain of imports. Within
``simulator/``, the simulated parts are hardware (they import ``device/`` only); the shift
harness in ``simulator/harness/`` may use everything below ``bodycam/``.

The imports are read from the source (every ``import`` and ``from … import``, at module
level or inside functions: a lazy import is still a dependency), so this test needs nothing
to be importable.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Top floor first. A package may import the packages listed after it.
# ``station`` (the custodians' web station) stands on the dock: it reads the archive and
# the ledger through dock/, decrypts with firmware_py/'s evidence format, and nothing below
# it knows it exists; it stands below the simulator so it can never reach simulated parts.
FLOORS = ["bodycam", "simulator", "station", "dock", "sync", "firmware_py", "device"]

# Parts of a package that stand lower than the package itself, and what they may import
# besides themselves.
SIMULATED_PARTS = ("simulator",)  # simulator/*.py outside simulator/harness/
PARTS_MAY_IMPORT = {"device"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported name lives in (the longest known prefix)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # ``from package import module`` names the module itself.
            names = [f"{origin}.{alias.name}" for alias in node.names] + [origin]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _floor(module: str) -> int:
    return FLOORS.index(module.split(".")[0])


def _is_simulated_part(module: str) -> bool:
    parts = module.split(".")
    return parts[0] in SIMULATED_PARTS and len(parts) > 1 and parts[1] != "harness"


def test_the_packages_exist():
    for package in FLOORS:
        assert (ROOT / package / "__init__.py").is_file(), f"{package}/ is not a package"
    assert len(MODULES) > 50


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} imports {target}" for module, targets in graph.items()
            for target in sorted(targets) if _floor(target) < _floor(module)]


def test_no_package_imports_one_above_it():
    upward = _upward(GRAPH)
    assert not upward, "imports of a package above:\n" + "\n".join(upward)


def test_simulated_parts_are_hardware_only():
    wrong = []
    for module, targets in GRAPH.items():
        if not _is_simulated_part(module):
            continue
        for target in sorted(targets):
            top = target.split(".")[0]
            if not (_is_simulated_part(target) or top in PARTS_MAY_IMPORT):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "simulated parts reaching past device/:\n" + "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
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
    return found


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, "modules that import each other:\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert _cycles(graph) == expected


def test_a_lazy_upward_import_would_be_seen(tmp_path):
    source = tmp_path / "fake.py"
    source.write_text("def wire():\n    from bodycam.cli import main\n    return main\n")
    imports = _imports("device.fake", source)
    assert imports == {"bodycam.cli"}
    assert _upward({"device.fake": imports}) == ["device.fake imports bodycam.cli"]
