"""Fixtures for registry tests: tiny images, registries with htpasswd auth (one over TLS), a moto ECR server."""

from __future__ import annotations

import io
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import require

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
# moto's default account: GetAuthorizationToken's password is "<account id>-auth-token".
MOTO_ACCOUNT_ID = "123456789012"


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


def _start_registry(work_dir: Path, user: str, password: str, tls: tuple[Path, Path] | None = None):
    """A docker-registry on a free loopback port wanting ``user``/``password`` (basic auth), serving
    HTTPS with ``tls`` = (certificate, key) when given. Returns (host:port, process, log file)."""
    require(os.path.exists(REGISTRY_BINARY), "docker-registry binary", "apt-get install docker-registry")
    port = free_port()
    (work_dir / "htpasswd").write_text(_bcrypt_line(user, password) + "\n")
    config = work_dir / "config.yml"
    tls_section = f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else ""
    # The distribution config format is YAML; this one is fixed text with a few paths and a port.
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work_dir / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{tls_section}"
        f"auth:\n  htpasswd:\n    realm: mlops-test\n    path: {work_dir / 'htpasswd'}\n"
    )
    log = open(work_dir / "registry.log", "wb")
    process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"127.0.0.1:{port}"
    scheme, verify = ("https", ssl.create_default_context(cafile=tls[0].parent / "ca.crt")) if tls else ("http", True)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{scheme}://{url}/v2/", timeout=1, verify=verify).status_code == 401:
                return url, process, log
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_registry(process, log)
            pytest.fail(f"registry did not start: {(work_dir / 'registry.log').read_text()}")
        time.sleep(0.1)


def _stop_registry(process: subprocess.Popen, log) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


@pytest.fixture
def auth_registry(tmp_path: Path):
    """A second docker-registry on a free loopback port that wants user ``mlops`` / ``s3cret``."""
    url, process, log = _start_registry(tmp_path, "mlops", "s3cret")
    try:
        yield url
    finally:
        _stop_registry(process, log)


def write_test_ca_and_certificate(directory: Path, ip: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for ``ip``: (ca.crt, server.crt, server.key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = {
        "not_valid_before": now - datetime.timedelta(minutes=5),
        "not_valid_after": now + datetime.timedelta(days=1),
    }
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlops test CA")])
    ca = (
        x509.CertificateBuilder(
            subject_name=ca_name,
            issuer_name=ca_name,
            public_key=ca_key.public_key(),
            serial_number=x509.random_serial_number(),
            **valid,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder(
            subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]),
            issuer_name=ca_name,
            public_key=server_key.public_key(),
            serial_number=x509.random_serial_number(),
            **valid,
        )
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


DOCKER_CERTS_DIR = Path("/etc/docker/certs.d")


@dataclass(frozen=True)
class TlsRegistry:
    host: str  # 127.0.0.1:<port>
    ca_file: Path
    username: str
    password: str


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
    url, process, log = _start_registry(work_dir, username, password, tls=(certificate, key))
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
        _stop_registry(process, log)


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
