"""Run the simulator's HTTP server on a free loopback port in a background thread."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from tests.simulator.contracts import ContractChecker
from tests.simulator.engine import ArgoCDSimulator
from tests.simulator.server import create_app


class SimulatorServer:
    def __init__(self, simulator: ArgoCDSimulator, checker: ContractChecker, host: str = "127.0.0.1") -> None:
        self.simulator = simulator
        self.checker = checker
        self.app = create_app(simulator, checker)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.host, self.port = self._socket.getsockname()
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.app.state.requests

    def start(self, timeout: float = 10.0) -> SimulatorServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("simulator server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.simulator.wait_idle(timeout=30)
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
