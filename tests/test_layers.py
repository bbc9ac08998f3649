"""The layering of the three services (docs/architecture.md), checked on the source with `ast`:

- no service package (`deploy`, `serving`, `tee`) imports another: what two share lives below them;
- exactly one module defines the replica registry's heartbeat route, and exactly one starts the HTTPS
  server (uvicorn), so a heartbeat or TLS fix is made once;
- no module of a service is part of an import cycle.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sharedml"
SERVICES = ("deploy", "serving", "tee")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def imported(name: str) -> set[str]:
    """Every sharedml module (or package) `name` imports, at its top or inside a function, relative imports
    resolved: ``from .x import y`` counts as importing `x`, and `x.y` when `y` is a module."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return {module for module in found if module in MODULES and module != name}


def service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SERVICES else None


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_another(service):
    crossings = [f"{name} imports {target}" for name in MODULES if service_of(name) == service
                 for target in sorted(imported(name)) if service_of(target) not in (None, service)]
    assert not crossings, "\n".join(crossings)


def defining(predicate) -> list[str]:
    return [name for name in MODULES if any(predicate(node) for node in ast.walk(tree(name)))]


def is_heartbeat_route(node: ast.AST) -> bool:
    """A decorator call such as ``@app.post("/v1/replicas/{name}/heartbeat")``."""
    return (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and any(isinstance(d, ast.Call) and d.args and isinstance(d.args[0], ast.Constant)
                    and str(d.args[0].value).endswith("/heartbeat") for d in node.decorator_list))


def starts_server(node: ast.AST) -> bool:
    """A call of ``uvicorn.Config``/``uvicorn.Server`` or one passing uvicorn's TLS settings."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    uvicorn_call = (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and func.value.id == "uvicorn" and func.attr in ("Config", "Server", "run"))
    return uvicorn_call or any(keyword.arg in ("ssl_certfile", "ssl_cert_reqs") for keyword in node.keywords)


def test_one_module_defines_the_heartbeat_route():
    assert defining(is_heartbeat_route) == ["sharedml.net.replica_registry"]


def test_one_module_starts_the_https_server():
    assert defining(starts_server) == ["sharedml.net.https"]


def test_no_service_module_is_in_an_import_cycle():
    graph = {name: imported(name) for name in MODULES}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                if nxt == goal:
                    return True
                seen.add(nxt)
                todo.append(nxt)
        return False

    cycles = [f"{name} <-> {target}" for name in MODULES if service_of(name)
              for target in sorted(graph[name]) if reaches(target, name)]
    assert not cycles, "\n".join(cycles)
