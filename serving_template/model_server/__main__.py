"""Start the server: bind HOST:PORT (with SO_REUSEPORT when REUSE_PORT=1, so replicas can share an
address) and serve with uvicorn.

Replicas sharing a port share its connections as soon as they bind, so with REUSE_PORT=1 the model is
loaded before binding (a replica still loading would answer 503 to its share of the traffic during an
update), and a model that cannot be loaded ends the process instead of joining the group.

A replica leaving (SIGTERM: an update, a canary removed, a scale-down) first stops accepting, then
serves for ``SHUTDOWN_DRAIN_SECONDS`` (default 1) before uvicorn's own shutdown. uvicorn closes at once
every connection on which no request has arrived yet; one the kernel handed to this replica a moment
before the signal would be closed unanswered, which its client sees as "server disconnected". The
drain lets such a request arrive and be answered. Connections still waiting in the listening socket's
queue move to the other replicas when it closes (the holder sets net.ipv4.tcp_migrate_req). A second
signal shuts down at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from types import FrameType

import uvicorn
from model_server.app import create_app


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with a drain between "stop accepting" and "shut down" (see the module's docstring)."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self._loop is None or self.drain_seconds <= 0 or sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._loop.call_soon_threadsafe(self._stop_accepting)

    def _stop_accepting(self) -> None:
        for server in self.servers:
            server.close()  # the listening socket only; accepted connections keep being served
        assert self._loop is not None
        self._loop.call_later(self.drain_seconds, setattr, self, "should_exit", True)


def main() -> None:
    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "8080"))
    reuse_port = os.environ.get("REUSE_PORT") == "1"
    app = create_app(load_in_background=not reuse_port)
    if reuse_port and app.state.model_state.load_error:
        sys.exit(f"model server: cannot load the model: {app.state.model_state.load_error}")
    sock = bind(host, port, reuse_port)
    config = uvicorn.Config(
        app, log_level=os.environ.get("LOG_LEVEL", "warning"), access_log=False, timeout_keep_alive=30, lifespan="off"
    )
    DrainingServer(config, float(os.environ.get("SHUTDOWN_DRAIN_SECONDS", "1"))).run(sockets=[sock])


if __name__ == "__main__":
    main()
