"""Start the server: bind HOST:PORT (with SO_REUSEPORT when REUSE_PORT=1, so replicas can share an
address) and serve with uvicorn.

Replicas sharing a port share its connections as soon as they bind, so with REUSE_PORT=1 the model is
loaded before binding (a replica still loading would answer 503 to its share of the traffic during an
update), and a model that cannot be loaded ends the process instead of joining the group.
"""

from __future__ import annotations

import os
import socket
import sys

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
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
