"""Limits that hold against a real service process (uvicorn, as deployed): a chunked body over the limit,
spoofed X-Forwarded-For, and key guessing."""

from __future__ import annotations

import hashlib
import json
import secrets
import select
import socket
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

from control_api.api.security import client_address
from tests.support.service_process import ServiceProcess

KEY = "mlk_" + secrets.token_urlsafe(24)
MAX_BODY = 2**20
FAILED_AUTH_BURST = 5


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory):
    data = tmp_path_factory.mktemp("limits-keyed")
    (data / "api-keys.json").write_text(
        json.dumps([{"name": "ops", "role": "admin", "key_hash": "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()}])
    )
    service = ServiceProcess(
        {
            "MLOPS_DATA_DIR": str(data),
            "MLOPS_TARGET__KIND": "none",
            "MLOPS_API__MAX_BODY_BYTES": str(MAX_BODY),
            "MLOPS_AUTH__FAILED_AUTH_PER_MINUTE": "1",
            "MLOPS_AUTH__FAILED_AUTH_BURST": str(FAILED_AUTH_BURST),
        },
        data / "service.log",
    ).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def open_service(tmp_path_factory):
    data = tmp_path_factory.mktemp("limits-open")
    service = ServiceProcess(
        {
            "MLOPS_DATA_DIR": str(data),
            "MLOPS_TARGET__KIND": "none",
            "MLOPS_AUTH__RATE_LIMIT_PER_MINUTE": "1",
            "MLOPS_AUTH__RATE_LIMIT_BURST": "5",
        },
        data / "service.log",
    ).start()
    yield service
    service.stop()


def peak_memory_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def send_chunked(port: int, total: int, chunk: int = 2**20) -> tuple[bytes, int]:
    """POST a chunked body of up to ``total`` bytes; stop as soon as the service answers. Returns the
    start of the answer and how many body bytes went out."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sent = 0
    try:
        sock.sendall(
            (
                "POST /mlops/deploy HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"X-API-Key: {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        piece = f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n"
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        else:
            sock.sendall(b"0\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer, sent
    finally:
        sock.close()


def test_chunked_body_over_the_limit_is_413_without_buffering_it(keyed_service):
    before = peak_memory_bytes(keyed_service.proc.pid)
    answer, sent = send_chunked(keyed_service.port, 300 * 2**20)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    grown = peak_memory_bytes(keyed_service.proc.pid) - before
    assert grown < 64 * 2**20, (
        f"peak memory grew by {grown / 2**20:.0f} MiB for a {MAX_BODY} byte limit ({sent / 2**20:.0f} MiB sent)"
    )
    assert httpx.get(f"{keyed_service.url}/mlops/deployments", headers={"X-API-Key": KEY}).json()["total"] == 0


def test_key_guessing_is_rate_limited_per_address(keyed_service):
    statuses = [
        httpx.get(
            f"{keyed_service.url}/mlops/deployments",
            headers={"X-API-Key": f"mlk_guess-{i}", "X-Forwarded-For": f"198.51.100.{i}"},
        ).status_code
        for i in range(FAILED_AUTH_BURST + 3)
    ]
    assert statuses[:FAILED_AUTH_BURST].count(401) >= FAILED_AUTH_BURST - 1, (
        statuses
    )  # the chunked test may have used one
    assert statuses[-3:] == [429, 429, 429], statuses
    missing = httpx.get(f"{keyed_service.url}/mlops/models")
    assert missing.status_code == 429 and int(missing.headers["retry-after"]) >= 1
    # The holder of a valid key is not locked out by someone guessing from the same address.
    assert httpx.get(f"{keyed_service.url}/mlops/deployments", headers={"X-API-Key": KEY}).status_code == 200


def test_spoofed_forwarded_for_gets_no_bucket_of_its_own(open_service):
    statuses = [
        httpx.get(f"{open_service.url}/mlops/deployments", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
        for i in range(8)
    ]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3, statuses


def _request(peer: str, forwarded: str | None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request(
        {"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 40000), "query_string": b""}
    )


@pytest.mark.parametrize(
    "peer,forwarded,trusted,expected",
    [
        ("127.0.0.1", "203.0.113.7", [], "127.0.0.1"),  # no trusted proxy: the peer
        ("10.0.0.5", "203.0.113.7", ["10.0.0.0/8"], "203.0.113.7"),  # through our proxy
        ("10.0.0.5", "1.1.1.1, 203.0.113.7", ["10.0.0.0/8"], "203.0.113.7"),  # the client's own header is not believed
        ("10.0.0.5", "203.0.113.7, 10.0.0.9", ["10.0.0.0/8"], "203.0.113.7"),  # two proxies of ours
        ("192.0.2.1", "203.0.113.7", ["10.0.0.0/8"], "192.0.2.1"),  # an untrusted peer's header is ignored
        ("10.0.0.5", None, ["10.0.0.0/8"], "10.0.0.5"),
    ],
)
def test_client_address_believes_only_trusted_proxies(peer, forwarded, trusted, expected):
    from ipaddress import ip_network

    assert client_address(_request(peer, forwarded), [ip_network(t) for t in trusted]) == expected
