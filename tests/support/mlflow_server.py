"""A real ``mlflow server`` process for tests: SQLite backend and proxied artifacts under one folder.

The port and the store stay with the object, so ``kill`` then ``start`` brings back the same runs and
registry on the same address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.processes import stop_process_group

# mlflow imports a lot: starting one is slow on a busy machine.
START_TIMEOUT_SECONDS = 300


class MlflowServer:
    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        """``host``: the address it listens on (another local interface when containers must reach it)."""
        self.root = root
        self.host = host
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.database = root / "server.db"
        self.artifacts = root / "artifacts"
        self.log = root / "mlflow-server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> MlflowServer:
        """Start the server and wait until ``/health`` answers; RuntimeError with its log if it does not."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    "--backend-store-uri",
                    f"sqlite:///{self.database}",
                    "--artifacts-destination",
                    str(self.artifacts),
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Tracking and the model registry only: without this the server also starts a job runner
                # and several huey consumers (GenAI jobs), each a Python process that imports MLflow.
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
        deadline = time.monotonic() + timeout
        while not self.is_up():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("mlflow server did not start: " + self.log.read_text()[-2000:])
            time.sleep(0.3)
        return self

    def is_up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def uri(self, user: str, password: str) -> str:
        """The tracking URI with basic-auth credentials in it."""
        return f"http://{user}:{password}@{self.host}:{self.port}"

    def kill(self) -> None:
        """SIGKILL to the whole process group: a crash, not a shutdown."""
        stop_process_group(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM to the whole process group, then SIGKILL to whatever is left."""
        stop_process_group(self.proc)
