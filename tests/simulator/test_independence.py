"""The simulator is a model of Argo CD and Kubernetes, not of the code it checks: no module under
tests/simulator may import control_api, directly or through another module it imports."""

from __future__ import annotations

import ast
from pathlib import Path

SIMULATOR = Path(__file__).resolve().parent
REPO_ROOT = SIMULATOR.parents[1]


def imported_modules(path: Path, root: Path = REPO_ROOT) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base)
                module = f"{prefix}.{node.module}" if node.module else prefix
            else:
                module = node.module or ""
            modules.add(module)
            modules.update(f"{module}.{alias.name}" for alias in node.names)
    return modules


def module_file(module: str, root: Path = REPO_ROOT) -> Path | None:
    candidate = root.joinpath(*module.split("."))
    if candidate.with_suffix(".py").is_file():
        return candidate.with_suffix(".py")
    if (candidate / "__init__.py").is_file():
        return candidate / "__init__.py"
    return None


def project_imports_reachable_from(start: Path, root: Path = REPO_ROOT) -> dict[str, Path]:
    """Every module of this repository reachable from ``start`` through imports, with who imports it."""
    seen: dict[str, Path] = {}
    todo = [start]
    visited: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in visited:
            continue
        visited.add(path)
        for module in imported_modules(path, root):
            if module.split(".")[0] not in ("tests", "control_api"):
                continue
            seen.setdefault(module, path)
            target = module_file(module, root)
            if target is not None:
                todo.append(target)
    return seen


def simulator_modules() -> list[Path]:
    return sorted(p for p in SIMULATOR.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_simulator_has_modules_to_check():
    names = {p.relative_to(SIMULATOR).as_posix() for p in simulator_modules()}
    assert {"argocd/controller.py", "argocd/service.py", "kube/cluster.py", "simulator.py"} <= names


def test_no_simulator_module_reaches_control_api():
    offenders = {}
    for path in simulator_modules():
        for module, importer in project_imports_reachable_from(path).items():
            if module == "control_api" or module.startswith("control_api."):
                offenders[path.relative_to(REPO_ROOT).as_posix()] = (module, importer.relative_to(REPO_ROOT).as_posix())
    assert offenders == {}


def test_the_check_sees_an_indirect_import(tmp_path):
    # A module that reaches control_api through a helper (relative import included) is caught.
    package = tmp_path / "tests" / "simulator"
    package.mkdir(parents=True)
    (package / "helper.py").write_text("from control_api.settings import Settings\n")
    (package / "probe.py").write_text("from . import helper\n")
    reached = project_imports_reachable_from(package / "probe.py", tmp_path)
    assert "control_api.settings" in reached
