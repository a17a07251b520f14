"""Fixtures for registry tests: tiny images and a registry with htpasswd auth; tests/fixtures_registry.py
has the HTTPS registry and moto's ECR server, which other folders use too."""

from __future__ import annotations

import contextlib
import io
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.registry import start_registry, stop_registry


@pytest.fixture
def make_tiny_image(docker_client):
    """``make_tiny_image(content) -> local reference``: a new one-file image (import stamps a creation
    time, so two calls never give the same image ID)."""
    created: list[str] = []

    def make(content: str) -> str:
        payload = content.encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo("payload.txt")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
        reference = f"mlops-test/tiny:{uuid.uuid4().hex[:10]}"
        repository, tag = reference.split(":")
        docker_client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)
        created.append(reference)
        return reference

    yield make
    import docker.errors

    for reference in created:
        # force: also drops the registry tags and digests the pushes added to the same image.
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(docker_client.images.get(reference).id, force=True)


@pytest.fixture
def auth_registry(tmp_path: Path):
    """A second docker-registry on a free loopback port that wants user ``mlops`` / ``s3cret``."""
    url, process, log = start_registry(tmp_path, "mlops", "s3cret")
    try:
        yield url
    finally:
        stop_registry(process, log)


@pytest.fixture
def moto_refusing_credentials(moto_ecr):
    """Turn on moto's IAM checks: the fake access key is then unknown and every call is refused as
    AWS refuses it. The previous setting comes back afterwards (the server is shared by the process)."""
    answer = httpx.post(f"{moto_ecr}/moto-api/reset-auth", content=b"0", timeout=10)
    answer.raise_for_status()
    previous = answer.json()["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        yield moto_ecr
    finally:
        httpx.post(f"{moto_ecr}/moto-api/reset-auth", content=str(previous).encode(), timeout=10).raise_for_status()
