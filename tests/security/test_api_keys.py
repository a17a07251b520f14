"""API keys with roles, rate limits, body size: every route but /health is protected."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from control_api.api.security import hash_key
from tests.support.control import assert_error_format, example_request

READER, DEPLOYER, ADMIN = "mlk_reader-key-0123456789", "mlk_deployer-key-0123456789", "mlk_admin-key-0123456789"
KEYS = [
    {"name": "rita", "role": "reader", "key_hash": hash_key(READER)},
    {"name": "dora", "role": "deployer", "key_hash": hash_key(DEPLOYER)},
    {"name": "adam", "role": "admin", "key_hash": hash_key(ADMIN)},
]


@pytest.fixture
def secured(make_client):
    return make_client(auth={"keys": KEYS, "rate_limit_per_minute": 6000, "rate_limit_burst": 1000})


def test_no_key_is_401_on_every_route_but_health(secured):
    assert secured.get("/health").status_code == 200
    for method, path in [
        ("get", "/mlops/deployments"),
        ("get", "/mlops/models"),
        ("get", "/mlops/status"),
        ("get", "/metrics"),
        ("get", "/ready"),
        ("get", "/openapi.json"),
        ("post", "/mlops/deploy"),
        ("post", "/mlops/models/x/rollback"),
        ("delete", "/mlops/models/x/deployment"),
    ]:
        response = getattr(secured, method)(path)
        assert_error_format(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


def test_wrong_key_is_401_and_both_headers_work(secured):
    assert_error_format(secured.get("/mlops/deployments", headers={"X-API-Key": "mlk_nope"}), 401)
    assert secured.get("/mlops/deployments", headers={"X-API-Key": READER}).status_code == 200
    assert secured.get("/mlops/deployments", headers={"Authorization": f"Bearer {READER}"}).status_code == 200


def test_roles(secured):
    body = example_request(namespace="kube-system")  # refused by validation after auth: nothing runs
    error = assert_error_format(
        secured.post("/mlops/deploy", json=body, headers={"X-API-Key": READER}), 403, "forbidden"
    )
    assert "deployer" in error["message"]
    assert secured.post("/mlops/deploy", json=body, headers={"X-API-Key": DEPLOYER}).status_code == 422
    assert secured.post("/mlops/deploy", json=body, headers={"X-API-Key": ADMIN}).status_code == 422
    assert_error_format(secured.post("/mlops/models/x/rollback", headers={"X-API-Key": READER}), 403)
    # Admin-only: anything that is neither a read nor a deploy-family change.
    assert_error_format(secured.post("/metrics", headers={"X-API-Key": DEPLOYER}), 403)
    assert secured.post("/metrics", headers={"X-API-Key": ADMIN}).status_code == 405


def test_openapi_declares_the_keys_and_each_operations_role(secured):
    """The document says what the middleware enforces: every operation but /health needs a key, and the
    role it names is the one a weaker key is refused for."""
    document = secured.get("/openapi.json", headers={"X-API-Key": READER}).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {**schemes["ApiKeyHeader"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["BearerKey"]["scheme"] == "bearer"
    weaker = {"deployer": READER, "admin": DEPLOYER}
    checked = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path == "/health":
                assert operation["security"] == [] and "x-required-role" not in operation
                continue
            assert operation["security"] == [{"ApiKeyHeader": []}, {"BearerKey": []}], (method, path)
            role = operation["x-required-role"]
            assert role == ("reader" if method == "get" else role), (method, path)
            if role in weaker:
                concrete = path.replace("{name}", "x").replace("{deployment_id}", "0" * 32)
                response = secured.request(method.upper(), concrete, headers={"X-API-Key": weaker[role]})
                assert_error_format(response, 403, "forbidden")
                checked.add((method, path))
    assert len(checked) >= 4, checked  # deploy, retry, rollback, undeploy at least


def test_requester_is_the_key_name(secured):
    journal = secured.app.state.services.journal
    secured.post(
        "/mlops/deploy", params={"wait": "false"}, json=example_request("who"), headers={"X-API-Key": DEPLOYER}
    )
    records, _ = journal.list(model_name="who")
    assert records[0].requested_by == "dora"
    secured.app.state.orchestrator.shutdown()


def test_rate_limit_answers_429_with_retry_after(make_client):
    # One token a minute: a slow machine can't refill the bucket between these requests.
    client = make_client(auth={"keys": KEYS, "rate_limit_per_minute": 1, "rate_limit_burst": 3})
    headers = {"X-API-Key": READER}
    statuses = [client.get("/mlops/deployments", headers=headers).status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    limited = client.get("/mlops/deployments", headers=headers)
    assert_error_format(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Another key has its own bucket.
    assert client.get("/mlops/deployments", headers={"X-API-Key": ADMIN}).status_code == 200


def test_body_size_limit_is_413(make_client):
    client = make_client(api={"max_body_bytes": 2048})
    body = example_request()
    body["tags"] = {"padding": "x" * 4000}
    assert_error_format(client.post("/mlops/deploy", json=body), 413, "payload_too_large")
    assert client.get("/mlops/deployments").json()["total"] == 0


def test_idempotency_key_returns_the_first_deploy(client):
    first = client.post(
        "/mlops/deploy", params={"wait": "false"}, json=example_request("idem"), headers={"Idempotency-Key": "abc-1"}
    )
    again = client.post(
        "/mlops/deploy", params={"wait": "false"}, json=example_request("idem"), headers={"Idempotency-Key": "abc-1"}
    )
    assert first.json()["deployment_id"] == again.json()["deployment_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert client.get("/mlops/deployments", params={"model": "idem"}).json()["total"] == 1
    client.app.state.orchestrator.shutdown()


def test_create_key_command_stores_only_a_hash(tmp_path, make_client):
    env = {"MLOPS_DATA_DIR": str(tmp_path / "keys-data"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "control_api", "create-key", "--name", "first", "--role", "admin"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    key = result.stdout.strip()
    assert key.startswith("mlk_") and len(key) > 40
    stored = (tmp_path / "keys-data" / "api-keys.json").read_text()
    assert key not in stored and json.loads(stored)[0]["key_hash"] == hash_key(key)
    client = make_client(data_dir=tmp_path / "keys-data")
    assert_error_format(client.get("/mlops/deployments"), 401)
    assert client.get("/mlops/deployments", headers={"X-API-Key": key}).status_code == 200


def test_open_api_is_refused_on_a_non_loopback_address(tmp_path):
    env = {"MLOPS_DATA_DIR": str(tmp_path / "open-data"), "PATH": "/usr/bin:/bin"}
    refused = subprocess.run(
        [sys.executable, "-m", "control_api", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "no API key exists yet" in refused.stderr and "create-key" in refused.stderr


@pytest.mark.parametrize(
    "host,mode,with_key,refused",
    [
        ("0.0.0.0", "auto", False, True),
        ("10.1.2.3", "auto", False, True),
        ("127.0.0.1", "auto", False, False),
        ("::1", "auto", False, False),
        ("localhost", "auto", False, False),
        ("0.0.0.0", "auto", True, False),
        ("0.0.0.0", "required", False, False),
        ("0.0.0.0", "disabled", False, False),
    ],
)
def test_open_api_refusal_rules(tmp_path, host, mode, with_key, refused):
    from control_api.api.security import add_key
    from control_api.cli import open_api_refusal
    from control_api.settings import Settings

    settings = Settings(data_dir=tmp_path / "d", auth={"mode": mode})
    if with_key:
        add_key(settings, "first", "admin")
    assert (open_api_refusal(settings, host) is not None) is refused
