"""Run the installed ``mlops`` console script as a subprocess, with a clean environment and a private HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

MLOPS = Path(sys.executable).parent / "mlops"
# The admin key the CLI tests' service accepts.
API_KEY = "mlk_cli-tests-key"


def run_mlops(
    args: list[str], home: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    assert MLOPS.exists(), (
        f"{MLOPS} is missing: install the project (uv pip install -e '.[test]') to get the console script"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") and k != "XDG_CONFIG_HOME"}
    clean.update({"HOME": str(home), "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"})
    clean.update(env or {})
    return subprocess.run(
        [str(MLOPS), *args], cwd=REPO_ROOT, env=clean, capture_output=True, text=True, timeout=timeout
    )


def json_out(result: subprocess.CompletedProcess):
    """--json promises JSON only on stdout: parse all of it, not a line of it."""
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise AssertionError(f"stdout is not JSON ({exc}):\n{result.stdout}\nstderr:\n{result.stderr}") from None
