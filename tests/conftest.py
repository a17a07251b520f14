"""Shared fixtures.

External systems (Docker Engine, the local OCI registry, kubectl kustomize, an MLflow server) are
real. ``scripts/services.sh`` installs and starts them; ``.ci/run`` calls it. Outside CI a test that
needs a missing one is skipped with a reason that says how to enable it. Under ``CI=true`` a missing
service is a failure, never a skip, so a broken install step cannot hide behind green tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from control_api.adapters.kubectl import kustomize_command
from tests.support.availability import IN_CI, require
from tests.support.paths import CONTRACTS_DIR

pytest_plugins = ["tests.fixtures_control", "tests.fixtures_postgres", "tests.fixtures_registry"]


def _docker_ping() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def docker_available() -> bool:
    return _docker_ping()


@pytest.fixture
def docker_client(docker_available):
    require(docker_available, "Docker Engine")
    import docker

    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry_url() -> str:
    """host:port of the local OCI registry (docker-registry), started by scripts/services.sh."""
    url = os.environ.get("MLOPS_TEST_REGISTRY", "127.0.0.1:5000")
    import httpx

    try:
        ok = httpx.get(f"http://{url}/v2/", timeout=3).status_code in (200, 401)
    except httpx.HTTPError:
        ok = False
    require(ok, f"OCI registry at {url}")
    return url


@pytest.fixture(scope="session")
def kustomize_cmd() -> list[str]:
    """The service's own choice of kubectl (the virtual environment's first), so tests render alike."""
    command = kustomize_command()
    ok = shutil.which(command[0]) is not None
    if ok:
        ok = subprocess.run([*command, "--help"], capture_output=True).returncode == 0
    require(ok, "kubectl kustomize")
    return command


@pytest.fixture(scope="session")
def base_image(docker_available) -> str:
    """The base image of runtime images; scripts/services.sh makes one when none can be pulled."""
    require(docker_available, "Docker Engine")
    import docker

    name = os.environ.get("MLOPS_BUILD__BASE_IMAGE", "python:3.11-slim")
    client = docker.from_env()
    try:
        client.images.get(name)
        present = True
    except docker.errors.ImageNotFound:
        present = False
    finally:
        client.close()
    require(present, f"base image {name}")
    return name


@pytest.fixture(scope="session")
def buildah_base_image(registry_url) -> str:
    """The base image as the buildah backend gets it in production: from a registry. scripts/services.sh
    installs buildah and pushes the Docker Engine's base image to the local registry."""
    require(shutil.which("buildah") is not None, "buildah")
    import httpx

    name = os.environ.get("MLOPS_BUILD__BASE_IMAGE", "python:3.11-slim").split("/")[-1]
    repository, _, tag = name.partition(":")
    try:
        present = (
            httpx.head(
                f"http://{registry_url}/v2/{repository}/manifests/{tag or 'latest'}",
                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
                timeout=5,
            ).status_code
            == 200
        )
    except httpx.HTTPError:
        present = False
    require(present, f"base image {name} in the registry {registry_url}")
    return f"{registry_url}/{name}"


@pytest.fixture(scope="session")
def contracts_dir() -> Path:
    if not CONTRACTS_DIR.is_dir():
        if IN_CI:
            pytest.fail(f"CI=true: {CONTRACTS_DIR} is missing", pytrace=False)
        pytest.skip(f"{CONTRACTS_DIR} not found; check out ../shared beside the repo")
    return CONTRACTS_DIR


_MLFLOW_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_RUN_ID",
)


@pytest.fixture(autouse=True)
def _isolate_mlflow_globals():
    """MLflow keeps the tracking and registry URIs and the active experiment in process globals.
    Tests share worker processes (pytest-xdist), so one test's ``mlflow.set_registry_uri`` must not
    make another test's registry lookups land in a store that no longer exists."""
    saved_env = {key: os.environ.get(key) for key in _MLFLOW_ENV}
    yield
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    import sys

    mlflow = sys.modules.get("mlflow")
    if mlflow is None:  # this process never imported MLflow: nothing to reset (and importing it costs seconds)
        return
    try:
        if mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        from mlflow.tracking import fluent

        fluent._active_experiment_id = None
    except Exception:  # a half-initialised MLflow: nothing more to reset
        pass
