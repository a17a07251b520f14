"""``python -m model_server`` with REUSE_PORT=1 (replicas sharing a port): the model is loaded before the
port is bound, so the first connection that succeeds is already served by a ready model, and a model
that cannot load ends the process without ever binding."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from tests.support.ports import free_port
from tests.support.serving import SERVING_TEMPLATE


def start(model_dir, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "MODEL_DIR": str(model_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "REUSE_PORT": "1",
        "PYTHONPATH": str(SERVING_TEMPLATE),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "model_server"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def first_ready_answer(process: subprocess.Popen, port: int) -> httpx.Response:
    """The first answer of ``/ready`` once the server has bound its port (the process must not end)."""
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        assert time.monotonic() < deadline, "the server never bound its port"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        except httpx.ConnectError:
            time.sleep(0.05)


def test_the_first_answer_on_a_shared_port_is_from_a_loaded_model(iris_model_dirs):
    port = free_port()
    process = start(iris_model_dirs["forest"], port)
    try:
        assert first_ready_answer(process, port).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_model_that_cannot_load_ends_the_process_unbound(tmp_path, iris_model_dirs):
    broken = tmp_path / "broken"
    broken.mkdir()
    mlmodel = (iris_model_dirs["logistic"] / "MLmodel").read_text()
    (broken / "MLmodel").write_text(mlmodel)  # the pickled estimator it names is missing
    port = free_port()
    process = start(broken, port)
    output, _ = process.communicate(timeout=120)

    assert process.returncode != 0
    assert "model server: cannot load the model" in output.decode()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_connection_accepted_just_before_sigterm_is_still_answered(iris_model_dirs):
    """The kernel hands a connection to this replica, then SIGTERM arrives before its request does
    (a client a moment late on a replica being replaced). uvicorn alone closes such a connection at
    once, unanswered; the drain answers it. Meanwhile the port stops accepting: with no other replica
    in the group, a new connection is refused."""
    port = free_port()
    process = start(iris_model_dirs["logistic"], port)
    try:
        assert first_ready_answer(process, port).status_code == 200
        early = socket.create_connection(("127.0.0.1", port), timeout=10)
        time.sleep(0.2)  # accepted by the server's event loop, no request yet
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except ConnectionRefusedError:
            refused = True
        early.sendall(b"GET /health HTTP/1.1\r\nHost: replica\r\nConnection: close\r\n\r\n")
        answer = early.recv(4096)
        early.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert refused, "the port still accepted after SIGTERM"
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
