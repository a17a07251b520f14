"""Fuzzing the control service's OpenAPI document with schemathesis.

Every operation in ``/openapi.json`` is called with generated requests, valid and invalid, against the real
app in-process (its real journal and embedded MLflow on a throwaway data dir):

- with an admin key, so requests get past authentication and the bodies, paths, queries and headers are
  what is fuzzed: no answer may be a 5xx, and every answer must be declared in the document, with a
  body that matches its schema and the declared content type and headers;
- with no key: every route but ``/health`` answers 401 in the documented error format.

Side effects: the service runs with target ``none`` and the orchestrator's ``start`` is replaced (in this
test only) by a recorder, so a fuzzed deploy that passes validation is journaled and stays ``pending``
instead of installing generated requirement names and running a generated script. ``max_wait_seconds``
is 0, so a synchronous deploy answers 202 at once. ``script_content`` (format ``byte``) is generated as
small valid scripts half the time, so generated deploys get past validation. The Hypothesis example database
is off (nothing is written into the repository) and generation is derandomized so CI runs are reproducible; set
``MLOPS_FUZZ_EXAMPLES`` (per operation and run, default 50) and ``MLOPS_FUZZ_RANDOM=1`` for a deeper, random
local run.

schemathesis's own pytest plugin (``schemathesis.pytest.from_fixture``) does not run under pytest 9.2
(it writes ``Node._nodeid``), so the operations are parametrized here and each one's strategy is driven
by Hypothesis directly.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from control_api.api.schemas import MAX_EVENT_ID, MAX_INT64
from control_api.api.security import hash_key
from control_api.app import create_app
from control_api.journal.store import DeploymentStatus
from tests.support.control import example_request, make_settings

ADMIN = "mlk_fuzz-admin-key-0123456789"
MAX_EXAMPLES = int(os.environ.get("MLOPS_FUZZ_EXAMPLES", "50"))
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=os.environ.get("MLOPS_FUZZ_RANDOM") != "1",
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


def _settings(data_dir: Path):
    return make_settings(
        data_dir,
        data_dir / "venvs",
        auth={
            "keys": [{"name": "fuzz", "role": "admin", "key_hash": hash_key(ADMIN)}],
            "rate_limit_per_minute": 1_000_000,
            "rate_limit_burst": 1_000_000,
            "failed_auth_per_minute": 1_000_000,
            "failed_auth_burst": 1_000_000,
        },
        api={"max_wait_seconds": 0},
        training={"timeout_seconds": 5, "install_timeout_seconds": 5},
    )


# The document does not depend on the data dir; an app that is never started lists the operations.
OPERATIONS = [
    (method.upper(), path)
    for path, item in create_app(_settings(Path("/nonexistent"))).openapi()["paths"].items()
    for method in item
]


class StartRecorder:
    """Stands in for Orchestrator.start in this test: accepted deploys are journaled, never run."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def __call__(self, deployment_id: str) -> None:
        self.started.append(deployment_id)


class WithoutLifespan:
    """The app as schemathesis reaches it, with lifespan events answered here.

    schemathesis's pytest plugin ends every ASGI lifespan it started after each test, and its next request
    starts a new one: a new orchestrator per test, without the recorder. So the fixture runs the real
    lifespan once for the module (TestClient) and schemathesis only ever sees HTTP.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": f"{message['type']}.complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    app = create_app(_settings(tmp_path_factory.mktemp("fuzz") / "data"), resume=False)
    with TestClient(app):  # the real lifespan: journal, MLflow, orchestrator
        app.state.orchestrator.start = StartRecorder()
        # Importing MLflow and creating its tables can take longer than a request's timeout on a cold machine.
        app.state.services.mlflow.ping()
        yield app


# script_content is documented as format "byte" (base64). Random bytes are almost never UTF-8 Python, so the
# fuzzer would stop at that validator every time; half of these are small scripts that validate, which
# lets generated deploys get past validation to the namespace allowlist, the journal and a 202.
SCRIPTS = st.one_of(
    st.sampled_from([b"print('hello')\n", b"x = 1\n", "# \u00e9t\u00e9\nimport math\nprint(math.pi)\n".encode()]),
    st.binary(),
).map(lambda raw: base64.b64encode(raw).decode())


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    schemathesis.openapi.format("byte", SCRIPTS)
    return schemathesis.openapi.from_asgi("/openapi.json", WithoutLifespan(fuzz_app), headers={"X-API-Key": ADMIN})


def call(api_schema, method: str, path: str, **case_fields):
    """One explicit case through the same transport and checks as the fuzzer."""
    case = api_schema[path][method].Case(**case_fields)
    return case.call_and_validate(headers={"X-API-Key": ADMIN}, checks=CHECKS)


def test_document_declares_the_error_body_everywhere(api_schema):
    """Every route documents the answers the middleware can give any request, with the error body."""
    document = api_schema.raw_schema
    for method, path in OPERATIONS:
        responses = document["paths"][path][method.lower()]["responses"]
        expected = (
            {"413", "500"}
            if path == "/health"
            else {"401", "413", "429", "500"} | ({"403"} if method != "GET" else set())
        )
        assert expected <= set(responses), (method, path, sorted(responses))
        for status in expected:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody"), (method, path, status, ref)


def test_accepted_deploys_and_their_views_match_the_document(api_schema, fuzz_app):
    """Bodies the fuzzer rarely reaches (a deploy that validates): 202, replay, 409, the deployment, the page."""
    journal = fuzz_app.state.services.journal
    first = call(
        api_schema,
        "POST",
        "/mlops/deploy",
        body=example_request("fuzz-known"),
        headers={"Idempotency-Key": "fuzz-known-1"},
    )
    assert first.status_code == 202, first.text
    deployment_id = first.json()["deployment_id"]
    assert journal.get(deployment_id).status == DeploymentStatus.PENDING  # journaled, not run
    assert deployment_id in fuzz_app.state.orchestrator.start.started
    replay = call(
        api_schema,
        "POST",
        "/mlops/deploy",
        body=example_request("fuzz-known"),
        headers={"Idempotency-Key": "fuzz-known-1"},
    )
    assert replay.status_code == 202 and replay.json()["deployment_id"] == deployment_id
    assert replay.headers["idempotent-replayed"] == ["true"]  # schemathesis: lowercase names, lists of values
    busy = call(api_schema, "POST", "/mlops/deploy", body=example_request("fuzz-known"))
    assert busy.status_code == 409 and busy.json()["error"]["details"]["deployment_id"] == deployment_id
    assert (
        call(
            api_schema, "GET", "/mlops/deployments/{deployment_id}", path_parameters={"deployment_id": deployment_id}
        ).status_code
        == 200
    )
    assert (
        call(
            api_schema,
            "POST",
            "/mlops/deployments/{deployment_id}/retry",
            path_parameters={"deployment_id": deployment_id},
        ).status_code
        == 409
    )  # pending: not retryable
    page = call(api_schema, "GET", "/mlops/deployments", query={"model": "fuzz-known"})
    assert page.json()["total"] == 1
    assert call(api_schema, "GET", "/mlops/status").status_code == 200


def test_offsets_and_event_ids_past_their_columns_are_422(api_schema, fuzz_app):
    """Found by the fuzzer: offset=2**63 reached SQLite and raised OverflowError (a 500), and so did the event
    stream's resume point, after the 200 had started. Both are bounded now, as a query and as Last-Event-ID."""
    response = call(api_schema, "GET", "/mlops/deployments", query={"offset": MAX_INT64 + 1})
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "offset"
    assert call(api_schema, "GET", "/mlops/deployments", query={"offset": MAX_INT64}).json()["items"] == []
    journal = fuzz_app.state.services.journal
    record = journal.create(
        kind="deploy", model_name="fuzz-events", namespace="mlops-models", request={}, step_names=[]
    )
    journal.set_status(record.id, DeploymentStatus.FAILED, finished=True)
    path, ids = "/mlops/deployments/{deployment_id}/events", {"deployment_id": record.id}
    for too_big in (MAX_EVENT_ID + 1, MAX_INT64 + 1):
        assert call(api_schema, "GET", path, path_parameters=ids, query={"after": too_big}).status_code == 422
        assert (
            call(api_schema, "GET", path, path_parameters=ids, headers={"Last-Event-ID": str(too_big)}).status_code
            == 422
        )
    ended = call(api_schema, "GET", path, path_parameters=ids, query={"after": MAX_EVENT_ID})
    assert ended.status_code == 200 and "event: end" in ended.text


def test_postgresql_journal_bounds_and_nul(make_client, postgres_url):
    """Found with the journal on PostgreSQL: after=2**63-1 passed the first bound and PostgreSQL refused it
    against the INTEGER event ids; a NUL in an id or a list filter cannot be sent to PostgreSQL text. Both were
    a DataError (500); both are 422 now."""
    client = make_client(journal={"url": postgres_url})
    journal = client.app.state.services.journal
    record = journal.create(kind="deploy", model_name="pg-events", namespace="mlops-models", request={}, step_names=[])
    journal.set_status(record.id, DeploymentStatus.FAILED, finished=True)
    events = f"/mlops/deployments/{record.id}/events"
    assert client.get(events, params={"after": MAX_EVENT_ID + 1}).status_code == 422
    assert client.get(events, headers={"Last-Event-ID": str(MAX_EVENT_ID + 1)}).status_code == 422
    ended = client.get(events, params={"after": MAX_EVENT_ID})
    assert ended.status_code == 200 and "event: end" in ended.text
    assert client.get("/mlops/deployments", params={"offset": MAX_INT64}).json()["items"] == []
    assert client.get("/mlops/deployments", params={"offset": MAX_INT64 + 1}).status_code == 422
    for url in (
        "/mlops/deployments?status=%00",
        "/mlops/deployments?model=a%00b",
        "/mlops/deployments?kind=%00",
        "/mlops/deployments/a%00b",
        f"/mlops/deployments/{record.id}%00/events",
        "/mlops/deployments/%00/retry",
    ):
        response = client.post(url) if url.endswith("/retry") else client.get(url)
        assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error", (
            url,
            response.text,
        )
    assert client.get("/mlops/deployments", params={"status": "failed"}).json()["total"] == 1


def test_a_body_that_is_not_text_is_a_documented_400(api_schema):
    """Found by the fuzzer: FastAPI answers 400 for a body it cannot decode; the document now says so."""
    for path, params in (("/mlops/deploy", {}), ("/mlops/models/{name}/rollback", {"name": "m"})):
        response = call(
            api_schema, "POST", path, path_parameters=params, body=b"\xff\xfe{", media_type="application/json"
        )
        assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"


def cases(api_schema, method: str, path: str):
    operation = api_schema[path][method]
    return st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))


def _label(op):
    return f"{op[0]} {op[1]}"


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[_label(o) for o in OPERATIONS])
def test_fuzz_with_admin_key(api_schema, fuzz_app, method, path):
    seen = []

    @given(case=cases(api_schema, method, path))
    @FUZZ_SETTINGS
    def run(case):
        response = case.call_and_validate(headers={"X-API-Key": ADMIN}, checks=CHECKS)
        seen.append(response.status_code)

    run()
    statuses = sorted(set(seen))
    print(method, path, "answered", statuses, "to", len(seen), "requests")
    # The key got every request past authentication: what was fuzzed is the request itself.
    assert seen and 401 not in seen and 403 not in seen, statuses
    if path == "/mlops/deploy":
        assert 202 in seen, f"no generated deploy got past validation: {statuses}"
    # Deploys that validated were journaled and left pending, never run.
    journal = fuzz_app.state.services.journal
    for deployment_id in fuzz_app.state.orchestrator.start.started:
        assert journal.get(deployment_id).status == DeploymentStatus.PENDING


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[_label(o) for o in OPERATIONS])
def test_fuzz_without_key_is_401(api_schema, method, path):
    @given(case=cases(api_schema, method, path))
    @FUZZ_SETTINGS
    def run(case):
        for name in [h for h in (case.headers or {}) if h.lower() in ("x-api-key", "authorization")]:
            del case.headers[name]
        response = case.call_and_validate(checks=CHECKS)
        expected = 200 if path == "/health" else 401
        assert response.status_code == expected, (case.method, case.path, response.status_code, response.text[:300])

    run()
