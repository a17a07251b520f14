"""Fixtures for registry tests: tiny images, a second registry with htpasswd auth, a moto ECR server."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import require

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        try:
            # force: also drops the registry tags and digests the pushes added to the same image.
            docker_client.images.remove(docker_client.images.get(reference).id, force=True)
        except docker.errors.APIError:
            pass


def _bcrypt_line(user: str, password: str) -> str:
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt

        # rounds=16 is bcrypt cost 4: plenty for a test, and fast.
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        if hashed and hashed.startswith("$2"):
            return f"{user}:{hashed}"
    except ImportError:
        pass
    htpasswd = shutil.which("htpasswd")
    require(htpasswd is not None, "a bcrypt implementation (python crypt or htpasswd)", "apt-get install apache2-utils")
    return subprocess.run([htpasswd, "-nbB", user, password], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def auth_registry(tmp_path: Path):
    """A second docker-registry on a free loopback port that wants user ``mlops`` / ``s3cret``."""
    require(os.path.exists(REGISTRY_BINARY), "docker-registry binary", "apt-get install docker-registry")
    port = free_port()
    (tmp_path / "htpasswd").write_text(_bcrypt_line("mlops", "s3cret") + "\n")
    config = tmp_path / "config.yml"
    # The distribution config format is YAML; this one is fixed text with two paths and a port.
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: mlops-test\n    path: {tmp_path / 'htpasswd'}\n"
    )
    log = open(tmp_path / "registry.log", "wb")
    process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://{url}/v2/", timeout=1).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"auth registry did not start: {(tmp_path / 'registry.log').read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def moto_ecr(monkeypatch):
    """A moto server on loopback and fake AWS credentials; yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
