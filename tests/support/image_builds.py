"""Helpers for the image builder tests: a model bundle to build, and a served container to wait for."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_api.adapters.image_builder.base import ModelBundle


def model_bundle(model_dir: Path, name: str, version: str, deployment_prefix: str = "dep") -> ModelBundle:
    return ModelBundle(
        model_name=name,
        model_version=version,
        run_id=f"run-{version}",
        model_dir=model_dir,
        model_uri=f"models:/{name}/{version}",
        mlflow_tracking_uri="http://127.0.0.1:5001",
        deployment_id=f"{deployment_prefix}-{version}",
    )


def wait_answers(url: str, container: Any, timeout: float = 120) -> None:
    """Until ``url`` answers 200; fails with the container's log when it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        container.reload()
        if container.status == "exited":
            pytest.fail("the model server exited:\n" + container.logs().decode(errors="replace")[-3000:])
        time.sleep(0.5)
    pytest.fail(f"{url} never answered 200:\n" + container.logs().decode(errors="replace")[-3000:])
