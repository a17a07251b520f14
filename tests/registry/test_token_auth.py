"""Digest confirmation against a registry that wants a bearer token (the GHCR/Harbor/Docker Hub scheme).

No such registry can run here without a token server and certificates, so a small stand-in on loopback
speaks the challenge, the token endpoint and the manifest HEAD of the distribution spec.
"""

from __future__ import annotations

import base64
import http.server
import threading
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from control_api.adapters.registry.oci import OciRegistry
from control_api.errors import RegistryAuthFailed
from control_api.settings import RegistrySettings

DIGEST = "sha256:" + "ab" * 32
TOKEN = "pull-token-for-mlops-demo"


class TokenRegistry(http.server.BaseHTTPRequestHandler):
    token_requests: ClassVar[list[dict]] = []

    def do_GET(self):
        url = urlparse(self.path)
        if url.path != "/token":
            return self._send(404)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        expected = "Basic " + base64.b64encode(b"robot:right").decode()
        TokenRegistry.token_requests.append(query)
        if self.headers.get("Authorization") != expected:
            return self._send(401)
        body = f'{{"token": "{TOKEN}"}}'.encode()
        self._send(200, body, {"Content-Type": "application/json"})

    def do_HEAD(self):
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            realm = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}/token"
            return self._send(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="stand-in"'})
        if self.path != "/v2/mlops/demo/manifests/v1":
            return self._send(404)
        self._send(200, headers={"Docker-Content-Digest": DIGEST})

    def _send(self, status, body=b"", headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def token_registry():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    TokenRegistry.token_requests.clear()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_manifest_digest_through_a_bearer_token(token_registry):
    registry = OciRegistry(RegistrySettings(url=token_registry, username="robot", password="right"))

    assert registry.manifest_digest("mlops/demo", "v1") == DIGEST
    assert registry.manifest_digest("mlops/demo", "missing") is None
    assert TokenRegistry.token_requests[0] == {"service": "stand-in", "scope": "repository:mlops/demo:pull"}


def test_refused_token_request_is_an_auth_failure(token_registry):
    registry = OciRegistry(RegistrySettings(url=token_registry, username="robot", password="wrong"))

    with pytest.raises(RegistryAuthFailed):
        registry.manifest_digest("mlops/demo", "v1")
