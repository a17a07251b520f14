"""API keys with roles, rate limits, and the request body size limit.

Keys are stored only as sha256 hashes (they are long random strings, so a plain hash is enough), in
settings (``MLOPS_AUTH__KEYS``) or in the keys file that ``mlops-control create-key`` writes (atomically,
0600 from the first byte). A key is sent as ``X-API-Key`` or ``Authorization: Bearer``. The control
service's own ``/health`` is open.

Authentication fails closed (see ``KeyRing``). Requests with a valid key are rate-limited per key; those
without one (open mode, a missing or wrong key) per client address, which is the peer's address unless
the peer is one of ``api.trusted_proxies``. The body limit holds while a body streams in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.middleware.base import RequestResponseEndpoint

from control_api.api.errors import error_response
from control_api.journal.store import Journal
from control_api.settings import ApiKeySpec, Settings

ROLE_RANK = {"reader": 0, "deployer": 1, "admin": 2}
OPEN_PATHS = frozenset({"/health"})
# Changes that a deployer may make; every other non-GET call needs admin.
DEPLOYER_PREFIXES = ("/mlops/deploy", "/mlops/models/", "/mlops/deployments/")
KEY_PREFIX = "mlk_"
MAX_BUCKETS = 10_000
KEYS_CREATED_FLAG = "auth.keys_created"  # journal flag: from then on auth.mode=auto requires keys


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeysFileUnreadable(Exception):
    """The keys file exists but cannot be read or parsed: the service refuses protected routes."""


def read_keys_file(path: Path) -> list[ApiKeySpec] | None:
    """The keys in ``path``; None when there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeysFileUnreadable(f"the API keys file {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        items = json.loads(text or "[]")
        if not isinstance(items, list):
            raise ValueError("it must hold a JSON list")
        return [ApiKeySpec(**item) for item in items]
    except (ValueError, TypeError, ValidationError) as exc:
        raise KeysFileUnreadable(
            f"the API keys file {path} is not a valid list of keys: {str(exc).splitlines()[0][:200]}"
        ) from exc


def load_keys(settings: Settings) -> list[ApiKeySpec]:
    return list(settings.auth.keys) + (read_keys_file(settings.api_keys_file()) or [])


def write_keys_file(path: Path, keys: list[dict]) -> None:
    """Replace the keys file atomically; the new file is 0600 from its first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(keys, indent=2) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(staging)
        raise


def add_key(settings: Settings, name: str, role: str, journal: Journal | None = None) -> str:
    path = settings.api_keys_file()
    existing = [item.model_dump() for item in read_keys_file(path) or []]
    if any(item["name"] == name for item in existing):
        raise ValueError(f"a key named {name!r} exists already in {path}")
    key = new_key()
    # Validated by the model, as every entry of the keys file is: an unknown role is a ValueError.
    spec = ApiKeySpec.model_validate({"name": name, "role": role, "key_hash": hash_key(key)})
    existing.append(spec.model_dump())
    write_keys_file(path, existing)
    own = journal is None
    journal = journal or Journal(settings.journal_url())
    try:
        journal.set_flag(KEYS_CREATED_FLAG, "1")
    finally:
        if own:
            journal.close()
    return key


def required_role(method: str, path: str) -> str:
    if method in ("GET", "HEAD", "OPTIONS"):
        return "reader"
    if path.startswith(DEPLOYER_PREFIXES):
        return "deployer"
    return "admin"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per caller: ``burst`` at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """0 when allowed, else the seconds until a request would be."""
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > MAX_BUCKETS:  # forget callers whose bucket has refilled
                self._buckets = {
                    k: b for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate < self.burst
                }
            bucket = self._buckets.setdefault(caller, _Bucket(self.burst, now))
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate


@dataclass(frozen=True)
class AuthState:
    enabled: bool
    unavailable: str | None = None  # why protected routes answer 503


class KeyRing:
    """The keys, re-read whenever the keys file changes (and every few seconds) so a key created with
    ``mlops-control create-key`` works without a restart, and whether they are required.

    Fails closed: once keys have existed (recorded in the journal, which a deleted keys file cannot
    undo), ``auto`` requires them for good; a keys file that is unreadable, or missing while keys are
    required and none come from settings, makes every protected route answer 503."""

    def __init__(self, settings: Settings, journal: Callable[[], Journal]) -> None:
        self.settings = settings
        self._journal = journal
        self._loaded_at = -math.inf
        self._keys: list[ApiKeySpec] = []
        self._file_problem: str | None = None
        self._keys_created = False
        self._signature: tuple | None = None
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        """Re-read the keys when the keys file changed (one stat per request) or every few seconds."""
        path = self.settings.api_keys_file()
        try:
            st = os.stat(path)
            signature: tuple | None = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode)
        except OSError:
            signature = None
        if signature == self._signature and time.monotonic() - self._loaded_at <= 5:
            return
        try:
            from_file = read_keys_file(path)
            problem = (
                None if from_file is not None or self.settings.auth.keys else (f"the API keys file {path} is missing")
            )
        except KeysFileUnreadable as exc:
            from_file, problem = None, str(exc)
        keys = list(self.settings.auth.keys) + (from_file or [])
        if not self._keys_created:
            if keys:
                self._journal().set_flag(KEYS_CREATED_FLAG, "1")
                self._keys_created = True
            else:
                self._keys_created = self._journal().flag(KEYS_CREATED_FLAG) is not None
        self._keys, self._file_problem, self._signature = keys, problem, signature
        self._loaded_at = time.monotonic()

    def state(self) -> AuthState:
        mode = self.settings.auth.mode
        if mode == "disabled":
            return AuthState(False)
        with self._lock:
            try:
                self._refresh()
            except Exception as exc:
                return AuthState(
                    True, f"the service cannot tell whether API keys are required: {str(exc).splitlines()[0][:200]}"
                )
            enabled = mode == "required" or bool(self._keys) or self._keys_created
            if enabled and self._file_problem and not (self._file_problem.endswith("is missing") and self._keys):
                return AuthState(True, self._file_problem)
            return AuthState(enabled)

    def enabled(self) -> bool:
        return self.state().enabled

    def keys(self) -> list[ApiKeySpec]:
        self.state()
        return self._keys

    def lookup(self, key: str) -> ApiKeySpec | None:
        digest = hash_key(key)
        for spec in self._keys:
            if hmac.compare_digest(spec.key_hash, digest):
                return spec
        return None


def client_address(request: Request, trusted: list[IPv4Network | IPv6Network]) -> str:
    """The peer's address, or, when the peer is a trusted proxy, the last address in X-Forwarded-For
    that is not one (the nearest hop a proxy of ours saw). Without trusted proxies, the peer."""
    peer = request.client.host if request.client else "unknown"
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [
        hop.strip() for value in request.headers.getlist("x-forwarded-for") for hop in value.split(",") if hop.strip()
    ]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _within(address: str, networks: list[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address.strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in networks)


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def declare_security(app: FastAPI) -> None:
    """Say in ``/openapi.json`` what the middleware enforces: both ways of sending a key, on every
    operation but the open ones, with the role each needs (``x-required-role``), so generated clients
    and API explorers send the key."""
    build_document = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build_document()
        document.setdefault("components", {})["securitySchemes"] = {
            "ApiKeyHeader": {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "An API key (mlops-control create-key).",
            },
            "BearerKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "The same API key, as Authorization: Bearer.",
            },
        }
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                if path in OPEN_PATHS:
                    operation["security"] = []
                else:
                    operation["security"] = [{"ApiKeyHeader": []}, {"BearerKey": []}]
                    operation["x-required-role"] = required_role(method.upper(), path)
        app.openapi_schema = document
        return document

    # Replacing the method is FastAPI's documented way to extend the generated document.
    app.openapi = openapi  # type: ignore[method-assign]


class BodyTooLarge(Exception):
    pass


async def read_body_within(request: Request, limit: int) -> bytes:
    """Read the body as it streams in (chunked or not) and stop as soon as it passes ``limit``: no
    more than the limit is ever held. The route reads the same bytes afterwards."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    request._body = bytes(body)  # Starlette hands a cached body on to the route
    return request._body


def install_security(app: FastAPI, settings: Settings) -> None:
    ring = KeyRing(settings, lambda: app.state.services.journal)
    limiter = RateLimiter(settings.auth.rate_limit_per_minute, settings.auth.rate_limit_burst)
    refused = RateLimiter(settings.auth.failed_auth_per_minute, settings.auth.failed_auth_burst)
    trusted = [ip_network(entry, strict=False) for entry in settings.api.trusted_proxies]
    max_body = settings.api.max_body_bytes
    app.state.key_ring = ring

    def too_large(request: Request) -> JSONResponse:
        return error_response(request, 413, "payload_too_large", f"request body is larger than {max_body} bytes")

    def slow_down(request: Request, wait: float) -> JSONResponse:
        return error_response(
            request,
            429,
            "rate_limited",
            "too many requests; slow down",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )

    @app.middleware("http")
    async def security(request: Request, call_next: RequestResponseEndpoint) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body:
            return too_large(request)
        path = request.url.path
        address = client_address(request, trusted)
        caller = f"address:{address}"
        if path not in OPEN_PATHS:
            auth = await run_in_threadpool(ring.state)
            if auth.unavailable:
                return error_response(
                    request,
                    503,
                    "auth_unavailable",
                    f"API keys are required but cannot be checked: {auth.unavailable}. "
                    "Every protected route is refused until an administrator repairs it "
                    "(mlops-control create-key writes a new keys file).",
                )
            if auth.enabled:
                key = presented_key(request)
                spec = ring.lookup(key) if key else None
                if spec is None:
                    # Guessing keys costs a token of the address's small bucket per try.
                    wait = refused.take(address)
                    if wait > 0:
                        return slow_down(request, wait)
                    message = (
                        "the API key is not valid"
                        if key
                        else "an API key is required: send it as X-API-Key or Authorization: Bearer"
                    )
                    return error_response(request, 401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
                needed = required_role(request.method, path)
                if ROLE_RANK[spec.role] < ROLE_RANK[needed]:
                    return error_response(
                        request,
                        403,
                        "forbidden",
                        f"{request.method} {path} needs the {needed} role; key {spec.name!r} is {spec.role}",
                    )
                request.state.principal = spec.name
                request.state.api_key = spec
                caller = f"key:{spec.name}"
            wait = limiter.take(caller)
            if wait > 0:
                return slow_down(request, wait)
        if request.method in ("POST", "PUT", "PATCH"):
            try:
                await read_body_within(request, max_body)
            except BodyTooLarge:
                return too_large(request)
        return await call_next(request)
