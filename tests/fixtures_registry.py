"""Registry fixtures shared by test folders: an HTTPS docker-registry with basic auth and moto's ECR."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.registry import (
    DOCKER_CERTS_DIR,
    MOTO_ACCOUNT_ID,
    TlsRegistry,
    start_registry,
    stop_registry,
    write_test_ca_and_certificate,
)


@pytest.fixture
def tls_auth_registry(tmp_path: Path, docker_available):
    """A docker-registry serving HTTPS (a certificate from a throwaway CA) with basic auth, standing
    in for an ECR registry host: the user and password are the ones moto's GetAuthorizationToken
    hands out (user ``AWS``, password ``<account id>-auth-token``).

    The Docker Engine trusts the CA for this host through ``/etc/docker/certs.d/<host:port>/ca.crt``
    (read at each push and pull, no daemon restart); the fixture removes what it added. The daemon's
    default insecure-registries list holds 127.0.0.0/8, so for this loopback host it would also
    accept the certificate unverified; the service's own HTTPS manifest check verifies it (the test
    sets SSL_CERT_FILE to the CA)."""
    ca_file, certificate, key = write_test_ca_and_certificate(tmp_path / "tls", "127.0.0.1")
    work_dir = tmp_path / "tls-registry"
    work_dir.mkdir()
    username, password = "AWS", f"{MOTO_ACCOUNT_ID}-auth-token"
    url, process, log = start_registry(work_dir, username, password, tls=(certificate, key))
    certs_dir_existed = DOCKER_CERTS_DIR.exists()
    host_dir = DOCKER_CERTS_DIR / url
    host_dir.mkdir(parents=True)
    shutil.copy(ca_file, host_dir / "ca.crt")
    try:
        yield TlsRegistry(host=url, ca_file=ca_file, username=username, password=password)
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
        if not certs_dir_existed:
            shutil.rmtree(DOCKER_CERTS_DIR, ignore_errors=True)
        stop_registry(process, log)


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


@pytest.fixture
def ecr_naming_tls_registry(moto_ecr, tls_auth_registry, monkeypatch):
    """moto's ECR whose GetAuthorizationToken names the TLS registry as ``proxyEndpoint``; moto has
    no registry of its own and names ``<account>.dkr.ecr.<region>.amazonaws.com``, which must not be
    reached from here. The moto server runs in this process, so patching its response class reaches
    it. Everything else (token, user, password, repositories, images) is moto's own answer."""
    from moto.ecr.responses import ECRResponse

    original = ECRResponse.get_authorization_token

    def naming_the_tls_registry(self):
        answer = original(self)
        for data in answer.result["authorizationData"]:
            data["proxyEndpoint"] = f"https://{tls_auth_registry.host}"
        return answer

    monkeypatch.setattr(ECRResponse, "get_authorization_token", naming_the_tls_registry)
    yield moto_ecr, tls_auth_registry
