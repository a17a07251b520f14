"""Helpers for control-service tests; the fixtures (make_client, client, venv_cache) live in tests/fixtures_control.py."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from control_api.app import create_app
from control_api.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "train_random_forest.py"


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def script(body: str) -> str:
    return b64(textwrap.dedent(body))


def make_settings(data_dir: Path, venv_cache: Path, **overrides) -> Settings:
    values = {
        "data_dir": data_dir,
        "target": {"kind": "none"},
        "training": {"venv_cache_dir": venv_cache, "timeout_seconds": 300},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return Settings(**values)


def example_request(model_name: str = "iris-rf", **extra) -> dict:
    body = {
        "script_content": b64(EXAMPLE.read_bytes()),
        "script_name": "train_random_forest.py",
        "model_name": model_name,
        "requirements": ["scikit-learn"],
    }
    body.update(extra)
    return body


def assert_error_format(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}, error
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["message"]
    if code:
        assert error["code"] == code, error
    return error
