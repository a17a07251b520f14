"""scripts/test.sh passes pytest's verdict through, but never lets an empty collection look green."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_SCRIPT = REPO_ROOT / "scripts" / "test.sh"


def run_test_script(*pytest_args: str) -> subprocess.CompletedProcess:
    # Setup and the static checks are skipped: this test is about the exit-code contract, the machine is
    # already set up (or the outer run would not have got here), and tests/infra/test_lint_script.py covers
    # how a failed static check fails the run.
    env = {**os.environ, "MLOPS_TEST_SKIP_SETUP": "1", "MLOPS_TEST_SKIP_LINT": "1"}
    return subprocess.run(
        [str(TEST_SCRIPT), "-p", "no:cacheprovider", "-q", *pytest_args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.fixture
def suite_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "suite"
    directory.mkdir()
    return directory


def test_no_tests_collected_is_a_failure(suite_dir):
    result = run_test_script(str(suite_dir))
    assert result.returncode == 1
    assert "collected no tests" in result.stderr


def test_passing_suite_exits_zero(suite_dir):
    (suite_dir / "test_ok.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    result = run_test_script(str(suite_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_failing_suite_keeps_pytest_exit_code(suite_dir):
    (suite_dir / "test_bad.py").write_text("def test_bad():\n    assert 1 + 1 == 3\n")
    result = run_test_script(str(suite_dir))
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr


SHELL_ENTRY_POINTS = [
    ".ci/run",
    "scripts/test.sh",
    "scripts/lint.sh",
    "scripts/python-env.sh",
    "scripts/services.sh",
    "scripts/make-base-image.sh",
]


@pytest.mark.parametrize("relative_path", SHELL_ENTRY_POINTS)
def test_entry_point_is_executable_strict_bash(relative_path):
    script = REPO_ROOT / relative_path
    assert os.access(script, os.X_OK), f"{relative_path} is not executable (git update-index --chmod=+x)"
    text = script.read_text()
    assert text.splitlines()[0] in ("#!/usr/bin/env bash", "#!/bin/bash")
    assert "set -euo pipefail" in text
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
