"""scripts/services.sh finds PostgreSQL's server binaries where Debian puts them (off PATH), installs the
package when there are none, and proves a cluster starts. Functions are run alone by sourcing the
script, which then starts nothing by itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = REPO_ROOT / "scripts" / "services.sh"


def run_function(call: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f'source "{SERVICES}" && {call}'],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def fake_server(root: Path, version: str, *tools: str) -> Path:
    bin_dir = root / version / "bin"
    bin_dir.mkdir(parents=True)
    for tool in tools:
        (bin_dir / tool).write_text("#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def test_the_newest_complete_versioned_directory_is_found_off_path(tmp_path):
    lib = tmp_path / "postgresql"
    fake_server(lib, "13", "initdb", "pg_ctl")
    newest = fake_server(lib, "15", "initdb", "pg_ctl")
    fake_server(lib, "16", "initdb")  # no pg_ctl: not a usable server
    env = {"PATH": "/usr/bin:/bin", "MLOPS_POSTGRES_LIB_DIR": str(lib), "HOME": str(tmp_path)}
    found = run_function("postgres_bin_dir", env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(newest)


def test_without_a_server_nothing_is_found_so_the_package_gets_installed(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MLOPS_POSTGRES_LIB_DIR": str(tmp_path / "none"), "HOME": str(tmp_path)}
    found = run_function("postgres_bin_dir", env)
    assert found.returncode == 0 and found.stdout == "", found.stdout + found.stderr


def test_ensure_postgres_starts_a_throwaway_cluster_here(tmp_path):
    env = {**os.environ, "MLOPS_SERVICES_DIR": str(tmp_path / "services")}
    result = run_function("ensure_postgres", env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("postgresql:") and "started and stopped" in result.stdout, result.stdout
