"""Control-service fixtures shared by every test folder: a real app (in-process TestClient) on a throwaway data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from control_api.app import create_app
from tests.support.control import make_settings


@pytest.fixture(scope="session")
def venv_cache(tmp_path_factory) -> Path:
    """Training environments are shared by the whole session: building one costs seconds, not nothing."""
    return tmp_path_factory.mktemp("venvs")


@pytest.fixture
def make_client(tmp_path, venv_cache):
    clients = []

    def factory(data_dir: Path | None = None, **overrides) -> TestClient:
        settings = make_settings(data_dir or tmp_path / "data", venv_cache, **overrides)
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()
