"""Model-server test helpers: the server imported as in its image, and every request shape it accepts."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from tests.support.iris import COLUMNS
from tests.support.paths import REPO_ROOT
from tests.support.ports import free_port

SERVING_TEMPLATE = REPO_ROOT / "serving_template"
# Inside the image the server is the top-level package ``model_server``; import it the same way here.
if str(SERVING_TEMPLATE) not in sys.path:
    sys.path.insert(0, str(SERVING_TEMPLATE))


def make_client(model_dir: Path) -> TestClient:
    from model_server.app import create_app

    return TestClient(create_app(model_dir, load_in_background=False))


# One row of each class plus a borderline one, so a wrong column order changes the answer.
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 4.2, 1.5]]


def records(rows):
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def bodies(rows):
    """(shape name, endpoint, body) for every supported request shape carrying ``rows``."""
    reversed_columns = list(reversed(COLUMNS))
    return [
        ("inputs-columns", "/predict", {"inputs": {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}}),
        ("inputs-rows", "/predict", {"inputs": rows}),
        ("data", "/predict", {"data": rows}),
        ("features", "/predict", {"features": rows}),
        ("instances-rows", "/predict", {"instances": rows}),
        ("instances-records", "/predict", {"instances": records(rows)}),
        ("dataframe_split", "/predict", {"dataframe_split": {"columns": COLUMNS, "data": rows}}),
        (
            "dataframe_split-reordered",
            "/predict",
            {"dataframe_split": {"columns": reversed_columns, "data": [list(reversed(r)) for r in rows]}},
        ),
        ("dataframe_records", "/predict", {"dataframe_records": records(rows)}),
        ("batch-inputs", "/predict/batch", {"inputs": rows}),
        ("batch-records", "/predict/batch", {"dataframe_records": records(rows)}),
        ("invocations-split", "/invocations", {"dataframe_split": {"columns": COLUMNS, "data": rows}}),
        ("invocations-records", "/invocations", {"dataframe_records": records(rows)}),
        ("invocations-instances", "/invocations", {"instances": records(rows)}),
        ("invocations-inputs", "/invocations", {"inputs": rows}),
    ]


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
