"""KubeServer: the simulated Kubernetes API (api.py) on a free loopback port, in a thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Self

import uvicorn

from tests.simulator.kube.api import create_app
from tests.simulator.kube.cluster import Cluster
from tests.simulator.kube.rbac import RbacPolicy

DEFAULT_TOKEN = "sim-kubernetes-token"


class KubeServer:
    def __init__(
        self,
        cluster: Cluster,
        *,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        rbac: RbacPolicy | None = None,
    ) -> None:
        """``rbac``: the token is that service account's, and may do what its roles allow; without it,
        the token may do everything (a cluster-admin's)."""
        self.cluster = cluster
        self.token = token
        self.app = create_app(cluster, token=token, rbac=rbac)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.host, self.port = self._socket.getsockname()
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True, name="kube-apiserver"
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.app.state.requests

    def start(self, timeout: float = 10.0) -> KubeServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("Kubernetes API simulator did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
