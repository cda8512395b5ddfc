"""The requirement table: which test shows which requirement of the regulation.

The requirements are data (``docs/requirements.toml``: id, article, one-line statement).
A test names the ids it shows with ``@pytest.mark.req("R13.1", ...)`` — on the function,
on its class, as ``pytestmark = pytest.mark.req(...)`` for a whole module or class, or in
``pytest.param(..., marks=pytest.mark.req(...))`` for some cases of a parametrized test.
The marks are read from the tests' source with ``ast`` (nothing is imported or run), and
``table_markdown()`` renders the ``requirements table`` block of ``docs/requirements.md``
for ``scripts/update_readme.py``.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "docs" / "requirements.toml"
TESTS = ROOT / "tests"


@dataclass(frozen=True)
class Requirement:
    id: str
    article: int
    statement: str


def load_requirements(path: Path = REQUIREMENTS) -> dict[str, Requirement]:
    """Every requirement by id, in the order of the file (the regulation's order)."""
    with path.open("rb") as f:
        data = tomllib.load(f)
    found: dict[str, Requirement] = {}
    for entry in data["requirement"]:
        if entry["id"] in found:
            raise ValueError(f"{path}: {entry['id']} is listed twice")
        found[entry["id"]] = Requirement(entry["id"], int(entry["article"]), entry["statement"].strip())
    return found


def _is_req(node: ast.AST) -> bool:
    """``pytest.mark.req(...)`` or ``mark.req(...)``."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "req"):
        return False
    owner = node.func.value
    return ((isinstance(owner, ast.Attribute) and owner.attr == "mark")
            or (isinstance(owner, ast.Name) and owner.id == "mark"))


def _ids(call: ast.Call, where: str) -> list[str]:
    ids = []
    for arg in call.args:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise ValueError(f"{where}, line {call.lineno}: req(...) takes literal id strings, "
                             f"not {ast.unparse(arg)}")
        ids.append(arg.value)
    if not ids:
        raise ValueError(f"{where}, line {call.lineno}: req() names no requirement")
    return ids


def _marks_in(node: ast.AST | None, where: str) -> list[str]:
    """The ids of every req mark in an expression: a mark, a list of marks, or a
    decorator such as ``parametrize`` whose ``pytest.param(..., marks=...)`` carry them."""
    if node is None:
        return []
    return [i for sub in ast.walk(node) if _is_req(sub) for i in _ids(sub, where)]


def _pytestmark(body: list[ast.stmt], where: str) -> list[str]:
    ids = []
    for stmt in body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                for t in stmt.targets):
            ids += _marks_in(stmt.value, where)
        elif (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
              and stmt.target.id == "pytestmark"):
            ids += _marks_in(stmt.value, where)
    return ids


def _direct_and_param(decorators: list[ast.expr], where: str) -> tuple[list[str], list[str]]:
    direct, param = [], []
    for decorator in decorators:
        if _is_req(decorator):
            direct += _ids(decorator, where)
        else:
            param += _marks_in(decorator, where)
    return direct, param


def marked_tests(tests: Path = TESTS) -> dict[str, list[str]]:
    """Test → the ids it shows, from the source of ``tests/**/test_*.py``. The test is its
    pytest node id (``tests/test_x.py::test_name``, ``...::TestClass::test_name``), with
    `` (some cases)`` when only some ``pytest.param`` cases carry the mark."""
    found: dict[str, list[str]] = {}

    def add(name: str, ids: list[str]) -> None:
        if ids:
            found.setdefault(name, [])
            found[name] += [i for i in ids if i not in found[name]]

    for path in sorted(tests.rglob("test_*.py")):
        where = path.relative_to(tests.parent).as_posix()
        module = ast.parse(path.read_text(), filename=str(path))
        module_ids = _pytestmark(module.body, where)
        for node in module.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                direct, param = _direct_and_param(node.decorator_list, where)
                add(f"{where}::{node.name}", module_ids + direct)
                add(f"{where}::{node.name} (some cases)", [i for i in param if i not in module_ids + direct])
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                class_direct, _ = _direct_and_param(node.decorator_list, where)
                class_ids = module_ids + class_direct + _pytestmark(node.body, where)
                for method in node.body:
                    if (isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef))
                            and method.name.startswith("test")):
                        direct, param = _direct_and_param(method.decorator_list, where)
                        add(f"{where}::{node.name}::{method.name}", class_ids + direct)
                        add(f"{where}::{node.name}::{method.name} (some cases)",
                            [i for i in param if i not in class_ids + direct])
    return found


def coverage(requirements: dict[str, Requirement] | None = None,
             tests: Path = TESTS) -> dict[str, list[str]]:
    """Requirement id → the tests that show it (every id, in order; an empty list for the
    ids nothing shows). An id no requirement has is an error."""
    requirements = load_requirements() if requirements is None else requirements
    shown: dict[str, list[str]] = {rid: [] for rid in requirements}
    for test, ids in marked_tests(tests).items():
        for rid in ids:
            if rid not in shown:
                raise ValueError(f"{test} is marked req({rid!r}), which docs/requirements.toml "
                                 f"does not list")
            shown[rid].append(test)
    return shown


def table_markdown() -> str:
    requirements = load_requirements()
    shown = coverage(requirements)
    tests = {t for ts in shown.values() for t in ts}
    unshown = [rid for rid, ts in shown.items() if not ts]
    lines = [f"{len(requirements) - len(unshown)} of {len(requirements)} requirements are shown "
             f"by at least one test ({len(tests)} tests are marked); {len(unshown)} by none.",
             "",
             "| Id | Art. | What the software must do | Shown by |",
             "|---|---|---|---|"]
    for rid, req in requirements.items():
        cell = "<br>".join(f"`{t}`" for t in shown[rid]) or "**nothing shows this**"
        lines.append(f"| {rid} | {req.article} | {req.statement.replace('|', '&#124;')} | {cell} |")
    lines += ["", "### Shown by no test", ""]
    lines += [f"- **{rid}** (Art. {requirements[rid].article}) {requirements[rid].statement}"
              for rid in unshown] or ["None."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table_markdown(), end="")
