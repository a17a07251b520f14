from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVING_TEMPLATE = Path(__file__).resolve().parents[2] / "serving_template"
# Inside the image the server is the top-level package ``model_server``; import it the same way here.
if str(SERVING_TEMPLATE) not in sys.path:
    sys.path.insert(0, str(SERVING_TEMPLATE))


@pytest.fixture(scope="session")
def iris_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Downloaded model dirs of a LogisticRegression and a RandomForest on iris, with the identity file the
    image builder writes."""
    from tests.serving.sample_models import log_iris_model

    workdir = tmp_path_factory.mktemp("serving-models")
    dirs = {
        "logistic": log_iris_model(workdir, "logistic", "iris"),
        "forest": log_iris_model(workdir, "forest", "iris-forest"),
        "pipeline": log_iris_model(workdir, "pipeline", "iris-pipeline"),
    }
    for kind, model_dir in dirs.items():
        (model_dir / "mlops-model.json").write_text(
            json.dumps(
                {
                    "model_name": f"iris-{kind}",
                    "model_version": "1",
                    "run_id": f"run-{kind}",
                    "model_uri": f"models:/iris-{kind}/1",
                    "mlflow_uri": "sqlite:///test.db",
                }
            )
        )
    return dirs


@pytest.fixture(scope="session")
def pyfunc_models(iris_model_dirs):
    import mlflow.pyfunc

    return {kind: mlflow.pyfunc.load_model(str(path)) for kind, path in iris_model_dirs.items()}


def make_client(model_dir: Path):
    from fastapi.testclient import TestClient
    from model_server.app import create_app

    return TestClient(create_app(model_dir, load_in_background=False))


@pytest.fixture(scope="session")
def clients(iris_model_dirs):
    return {kind: make_client(path) for kind, path in iris_model_dirs.items()}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_process(model_dir: Path, **env: str) -> Iterator[str]:
    """``python -m model_server`` on a free loopback port, as the image runs it; yields its base URL once
    the model is loaded (REUSE_PORT=1 loads before binding, so the first connection is served)."""
    import os
    import subprocess
    import time

    import httpx

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "model_server"],
        env={
            **os.environ,
            "MODEL_DIR": str(model_dir),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "REUSE_PORT": "1",
            "PYTHONPATH": str(SERVING_TEMPLATE),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "the model server never answered"
            try:
                if httpx.get(f"{url}/ready", timeout=10).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
