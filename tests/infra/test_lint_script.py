"""scripts/lint.sh fails on any formatter, linter or type error, and scripts/test.sh stops on such a failure.

Each test runs the real scripts with the real pyproject.toml and tools, in a copy of the repository's layout
whose packages and other Python folders hold one small module each, so a check's verdict depends only on the
code the test writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("control_api", "renderer", "serving_template")
# Folders of Python that does not ship: ruff checks them, mypy does not.
OTHER_PYTHON = ("tests", "bench", "scripts", "examples")

CLEAN_MODULE = 'def greeting(name: str) -> str:\n    return f"hello {name}"\n'

# One module per check, each breaking that check alone.
BROKEN_MODULES = {
    "ruff format": 'def greeting(name: str) -> str:\n    return  f"hello {name}"\n',
    "ruff check": 'import os\n\n\ndef greeting(name: str) -> str:\n    return f"hello {name}"\n',
    "mypy": "def greeting(name: str) -> int:\n    return name\n",
}


@pytest.fixture(scope="module")
def shared_mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture(autouse=True)
def reuse_mypy_cache(shared_mypy_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mypy's cache of the standard library's stubs makes each run take a second instead of ten; the cache
    # is safe to share between the copies because mypy checks every cached module's path and hash.
    monkeypatch.setenv("MYPY_CACHE_DIR", str(shared_mypy_cache))


def make_repository(root: Path, module_text: str, broken_package: str = "control_api") -> Path:
    """A repository with the real scripts, pyproject.toml and virtual environment, and one module per folder
    that lint.sh checks; ``broken_package`` (a package or another Python folder) gets ``module_text``."""
    (root / "scripts").mkdir(parents=True)
    for script in ("lint.sh", "test.sh"):
        shutil.copy2(REPO_ROOT / "scripts" / script, root / "scripts" / script)
    shutil.copy2(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / ".venv").symlink_to(REPO_ROOT / ".venv")
    for package in PACKAGES:
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
    for folder in PACKAGES + OTHER_PYTHON:
        (root / folder).mkdir(exist_ok=True)
        text = module_text if folder == broken_package else CLEAN_MODULE
        (root / folder / "greetings.py").write_text(text)
    return root


def run_script(root: Path, script: str, *args: str, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    # The static checks run unless a test asks otherwise, whatever the outer run was told.
    env = {**os.environ, "MLOPS_TEST_SKIP_LINT": "0", **env_overrides}
    return subprocess.run(
        [str(root / "scripts" / script), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def test_clean_code_passes_every_check(tmp_path: Path) -> None:
    root = make_repository(tmp_path / "repo", CLEAN_MODULE)
    result = run_script(root, "lint.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    for check in BROKEN_MODULES:
        assert f"lint.sh: {check}: passed" in result.stderr
    assert "all static checks passed" in result.stderr


@pytest.mark.parametrize("check", sorted(BROKEN_MODULES))
def test_a_broken_check_fails_the_script_and_is_named(tmp_path: Path, check: str) -> None:
    root = make_repository(tmp_path / "repo", BROKEN_MODULES[check])
    result = run_script(root, "lint.sh")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"lint.sh: {check}: FAILED" in result.stderr
    assert f"lint.sh: FAILED: {check}\n" in result.stderr
    for other in set(BROKEN_MODULES) - {check}:
        assert f"lint.sh: {other}: passed" in result.stderr


@pytest.mark.parametrize("package", PACKAGES)
def test_every_shipped_package_is_checked(tmp_path: Path, package: str) -> None:
    root = make_repository(tmp_path / "repo", BROKEN_MODULES["ruff check"], broken_package=package)
    result = run_script(root, "lint.sh")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{package}/greetings.py" in result.stdout


@pytest.mark.parametrize("folder", OTHER_PYTHON)
@pytest.mark.parametrize("check", ["ruff format", "ruff check"])
def test_ruff_checks_the_python_outside_the_packages(tmp_path: Path, folder: str, check: str) -> None:
    root = make_repository(tmp_path / "repo", BROKEN_MODULES[check], broken_package=folder)
    result = run_script(root, "lint.sh")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"lint.sh: FAILED: {check}\n" in result.stderr
    assert f"{folder}/greetings.py" in result.stdout + result.stderr


def test_mypy_checks_only_the_packages(tmp_path: Path) -> None:
    root = make_repository(tmp_path / "repo", BROKEN_MODULES["mypy"], broken_package="tests")
    result = run_script(root, "lint.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lint.sh: mypy: passed" in result.stderr


def test_untyped_function_in_the_control_service_fails_mypy(tmp_path: Path) -> None:
    # pyproject.toml asks for typed signatures in control_api and renderer; lint.sh must apply that config.
    root = make_repository(tmp_path / "repo", 'def greeting(name):\n    return f"hello {name}"\n')
    result = run_script(root, "lint.sh")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "lint.sh: FAILED: mypy\n" in result.stderr
    assert "no-untyped-def" in result.stdout


# The machine is set up already, and one test needs no pytest-xdist workers.
ONE_PROCESS_SUITE = {"MLOPS_TEST_SKIP_SETUP": "1", "MLOPS_TEST_WORKERS": "0"}


def write_passing_suite(root: Path) -> None:
    (root / "tests").mkdir(exist_ok=True)
    (root / "tests" / "test_ok.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")


def test_test_script_stops_before_pytest_when_a_check_fails(tmp_path: Path) -> None:
    root = make_repository(tmp_path / "repo", BROKEN_MODULES["ruff check"])
    write_passing_suite(root)
    result = run_script(root, "test.sh", "-p", "no:cacheprovider", "-q", **ONE_PROCESS_SUITE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "static checks (scripts/lint.sh) failed" in result.stderr
    assert "1 passed" not in result.stdout


def test_test_script_runs_the_suite_after_passing_checks(tmp_path: Path) -> None:
    root = make_repository(tmp_path / "repo", CLEAN_MODULE)
    write_passing_suite(root)
    result = run_script(root, "test.sh", "-p", "no:cacheprovider", "-q", **ONE_PROCESS_SUITE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all static checks passed" in result.stderr
    assert "1 passed" in result.stdout


def test_skip_lint_setting_runs_the_suite_despite_a_failing_check(tmp_path: Path) -> None:
    root = make_repository(tmp_path / "repo", BROKEN_MODULES["ruff check"])
    write_passing_suite(root)
    result = run_script(root, "test.sh", "-p", "no:cacheprovider", "-q", MLOPS_TEST_SKIP_LINT="1", **ONE_PROCESS_SUITE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lint.sh" not in result.stderr
    assert "1 passed" in result.stdout
