"""Registries for registry tests: a docker-registry with basic auth (optionally HTTPS), and its certificates."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.availability import require
from tests.support.ports import free_port

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
# moto's default account: GetAuthorizationToken's password is "<account id>-auth-token".
MOTO_ACCOUNT_ID = "123456789012"


def bcrypt_line(user: str, password: str) -> str:
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


def start_registry(work_dir: Path, user: str, password: str, tls: tuple[Path, Path] | None = None):
    """A docker-registry on a free loopback port wanting ``user``/``password`` (basic auth), serving
    HTTPS with ``tls`` = (certificate, key) when given. Returns (host:port, process, log file)."""
    require(os.path.exists(REGISTRY_BINARY), "docker-registry binary", "apt-get install docker-registry")
    port = free_port()
    (work_dir / "htpasswd").write_text(bcrypt_line(user, password) + "\n")
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
    log = open(work_dir / "registry.log", "wb")  # noqa: SIM115 (stop_registry closes it)
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
            stop_registry(process, log)
            pytest.fail(f"registry did not start: {(work_dir / 'registry.log').read_text()}")
        time.sleep(0.1)


def stop_registry(process: subprocess.Popen, log) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def write_test_ca_and_certificate(directory: Path, ip: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for ``ip``: (ca.crt, server.crt, server.key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
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
