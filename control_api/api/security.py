"""API keys with roles, per-key rate limits, and the request body size limit.

Keys are stored only as sha256 hashes (they are long random strings, so a plain hash is enough), in
settings (``MLOPS_AUTH__KEYS``) or in the keys file that ``mlops-control create-key`` writes. A key is
sent as ``X-API-Key`` or ``Authorization: Bearer``. The control service's own ``/health`` is open.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request

from control_api.api.errors import error_response
from control_api.settings import ApiKeySpec, Settings

ROLE_RANK = {"reader": 0, "deployer": 1, "admin": 2}
OPEN_PATHS = frozenset({"/health"})
# Changes that a deployer may make; every other non-GET call needs admin.
DEPLOYER_PREFIXES = ("/mlops/deploy", "/mlops/models/", "/mlops/deployments/")
KEY_PREFIX = "mlk_"


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def load_keys(settings: Settings) -> list[ApiKeySpec]:
    keys = list(settings.auth.keys)
    path = settings.api_keys_file()
    if path.exists():
        keys += [ApiKeySpec(**item) for item in json.loads(path.read_text() or "[]")]
    return keys


def add_key(settings: Settings, name: str, role: str) -> str:
    path = settings.api_keys_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else []
    if any(item["name"] == name for item in existing):
        raise ValueError(f"a key named {name!r} exists already in {path}")
    key = new_key()
    existing.append(ApiKeySpec(name=name, role=role, key_hash=hash_key(key)).model_dump())
    path.write_text(json.dumps(existing, indent=2) + "\n")
    path.chmod(0o600)
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
            bucket = self._buckets.setdefault(caller, _Bucket(self.burst, now))
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate


class KeyRing:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loaded_at = 0.0
        self._keys: list[ApiKeySpec] = []

    def keys(self) -> list[ApiKeySpec]:
        # Re-read now and then so a key created with `mlops-control create-key` works without a restart.
        if time.monotonic() - self._loaded_at > 5:
            self._keys = load_keys(self.settings)
            self._loaded_at = time.monotonic()
        return self._keys

    def enabled(self) -> bool:
        mode = self.settings.auth.mode
        return mode == "required" or (mode == "auto" and bool(self.keys()))

    def lookup(self, key: str) -> ApiKeySpec | None:
        digest = hash_key(key)
        for spec in self.keys():
            if hmac.compare_digest(spec.key_hash, digest):
                return spec
        return None


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

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build_document()
        document.setdefault("components", {})["securitySchemes"] = {
            "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                             "description": "An API key (mlops-control create-key)."},
            "BearerKey": {"type": "http", "scheme": "bearer", "description": "The same API key, as Authorization: Bearer."},
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

    app.openapi = openapi


def install_security(app: FastAPI, settings: Settings) -> None:
    ring = KeyRing(settings)
    limiter = RateLimiter(settings.auth.rate_limit_per_minute, settings.auth.rate_limit_burst)
    max_body = settings.api.max_body_bytes
    app.state.key_ring = ring

    @app.middleware("http")
    async def security(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body:
            return error_response(request, 413, "payload_too_large", f"request body is larger than {max_body} bytes")
        path = request.url.path
        caller = request.client.host if request.client else "unknown"
        if path not in OPEN_PATHS and ring.enabled():
            key = presented_key(request)
            if not key:
                return error_response(request, 401, "unauthorized", "an API key is required: send it as X-API-Key or Authorization: Bearer",
                                      headers={"WWW-Authenticate": "Bearer"})
            spec = ring.lookup(key)
            if spec is None:
                return error_response(request, 401, "unauthorized", "the API key is not valid", headers={"WWW-Authenticate": "Bearer"})
            needed = required_role(request.method, path)
            if ROLE_RANK[spec.role] < ROLE_RANK[needed]:
                return error_response(request, 403, "forbidden", f"{request.method} {path} needs the {needed} role; key {spec.name!r} is {spec.role}")
            request.state.principal = spec.name
            caller = f"key:{spec.name}"
        if path not in OPEN_PATHS:
            wait = limiter.take(caller)
            if wait > 0:
                return error_response(request, 429, "rate_limited", "too many requests; slow down",
                                      headers={"Retry-After": str(max(1, math.ceil(wait)))})
        if not declared and request.method in ("POST", "PUT", "PATCH"):
            body = await request.body()  # cached by Starlette for the route
            if len(body) > max_body:
                return error_response(request, 413, "payload_too_large", f"request body is larger than {max_body} bytes")
        return await call_next(request)
