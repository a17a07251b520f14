"""ArgoServer: the simulated argocd-server on a free loopback port, in a thread, optionally over TLS."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from tests.simulator.argocd.api import create_app
from tests.simulator.argocd.argocd import ArgoCD
from tests.simulator.argocd.tls import write_self_signed
from tests.simulator.contracts import ContractChecker


class ArgoServer:
    def __init__(self, argocd: ArgoCD, checker: ContractChecker, *, tls: bool = False, host: str = "127.0.0.1") -> None:
        self.argocd = argocd
        self.checker = checker
        self.tls = tls
        self.app = create_app(argocd, checker)
        self._tls_dir: Path | None = None
        self.ca_path: Path | None = None
        ssl_options = {}
        if tls:
            self._tls_dir = Path(tempfile.mkdtemp(prefix="argocd-server-tls-"))
            self.ca_path, key_path = write_self_signed(self._tls_dir)
            ssl_options = {"ssl_certfile": str(self.ca_path), "ssl_keyfile": str(key_path)}
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.host, self.port = self._socket.getsockname()
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False, **ssl_options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True, name="argocd-server"
        )

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.app.state.requests

    def start(self, timeout: float = 10.0) -> ArgoServer:
        self.argocd.start()
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("Argo CD simulator server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.argocd.wait_idle(timeout=60)
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)
        self._socket.close()
        self.argocd.stop()
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)

    def __enter__(self) -> ArgoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
