"""The house rules that import-linter's contracts (``lint-imports``, run by ``make test``) do not
express: no import cycles between the project's modules, and no function-local import of the
project's own code without a one-line reason (a comment on the line or the line above).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("quorum", "annotation", "acquisition", "loop")


def _strongly_connected(graph) -> list[set[str]]:
    """Tarjan's algorithm over the project's import graph (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules) for m in graph.modules}
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            for j in range(i, len(edges[node])):
                child = edges[node][j]
                if child not in index:
                    work.append((node, j + 1))
                    work.append((child, 0))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return components


def test_no_import_cycles():
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert cycles == []


def test_finds_a_cycle_when_there_is_one():
    graph = grimp.ImportGraph()
    for name in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(name)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.x")
    graph.add_import(importer="a.y", imported="a.z")
    assert [sorted(c) for c in _strongly_connected(graph) if len(c) > 1] == [["a.x", "a.y"]]


def _local_project_imports(path: Path) -> list[tuple[int, str]]:
    """Function-local imports of the project's own modules that carry no comment."""
    source = path.read_text()
    lines = source.splitlines()
    found = []

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom) and in_function:
                names = [child.module or ""] if isinstance(child, ast.ImportFrom) else [a.name for a in child.names]
                project = (isinstance(child, ast.ImportFrom) and child.level > 0) or any(
                    name.split(".")[0] in PACKAGES for name in names
                )
                here = lines[child.lineno - 1]
                above = lines[child.lineno - 2].strip() if child.lineno > 1 else ""
                if project and "#" not in here and not above.startswith("#"):
                    found.append((child.lineno, here.strip()))
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(source), False)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_function_local_imports_of_the_project_say_why(package):
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts and (found := _local_project_imports(path))
    }
    assert offenders == {}


def test_web_processes_start_without_pytorch():
    """A web process (settings, every app ready, the URLconf, the tasks registered) never imports
    PyTorch or transformers: gunicorn workers boot in a second and stay small. Models load only
    where they run (workers), behind a commented local import."""
    code = (
        "import sys, django; django.setup(); import quorum.urls, loop.tasks; "
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))"
    )
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"}
    env.update({k: v for k, v in os.environ.items() if k in ("DATABASE_URL", "CELERY_BROKER_URL", "HOME")})
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
