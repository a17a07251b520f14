"""A real control service process (target 'none': train and register) that requires an API key."""

from __future__ import annotations

import json

import pytest

from control_api.api.security import hash_key
from tests.support.cli import API_KEY
from tests.support.service_process import ServiceProcess


@pytest.fixture(scope="module")
def service(tmp_path_factory, venv_cache):
    data_dir = tmp_path_factory.mktemp("cli-service")
    env = {
        "MLOPS_DATA_DIR": str(data_dir / "data"),
        "MLOPS_TARGET__KIND": "none",
        "MLOPS_TRAINING__VENV_CACHE_DIR": str(venv_cache),
        "MLOPS_TRAINING__TIMEOUT_SECONDS": "300",
        "MLOPS_AUTH__KEYS": json.dumps([{"name": "cli-tests", "role": "admin", "key_hash": hash_key(API_KEY)}]),
    }
    process = ServiceProcess(env, data_dir / "service.log").start()
    yield process
    process.stop()


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def cli_env(service):
    return {"MLOPS_SERVER": service.url, "MLOPS_API_KEY": API_KEY}
