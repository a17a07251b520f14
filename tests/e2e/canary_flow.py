"""The canary releases both targets must carry, end to end, written once for the local target and the
Argo CD/Kubernetes simulator.

One endpoint serves a stable version (3 replicas at first) while the tests release new versions beside it:

- a healthy canary walks 25 % (1 canary : 3 stable) and 50 % (3 : 3), then is promoted;
- a canary whose model raises on some inputs is aborted by its analysis and reverted;
- a canary is aborted by hand, and another is promoted by hand.

**How the split is measured.** While a step's analysis runs, the test sends ``SPLIT_SAMPLES`` requests,
each on a new TCP connection (connections, not requests, are what the Service spreads), and counts
the ``model_version`` of each answer. Each connection goes to the canary with the probability of its
share of replicas, so the count is binomial: with 300 samples its standard deviation is at most 2.9
points, and the tolerance of ``SPLIT_TOLERANCE`` (10 points, more than three of them) makes a false
failure rarer than 1 in 1000. The simulator's kube-proxy picks an endpoint at random per connection,
as kube-proxy's iptables mode does; on the local target the kernel hashes each connection to one
of the SO_REUSEPORT group's sockets.

**Stable throughout.** A background thread asks the endpoint all along, each request on a new
connection, with rows the erroring model refuses and rows it accepts. Every answer must come, and
every answer from the stable version must be 200; only the canary under test may answer errors.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from fastapi.testclient import TestClient

from tests.e2e.review_helpers import git
from tests.support.control import example_request
from tests.support.iris import COLUMNS

# The stable version runs 3 replicas, so weights become 1:3 and 3:3 splits. Each release asks for
# one replica once it is promoted, which keeps the promotions' rollouts short.
ONE_REPLICA = {"replicas": 1}
SPLIT_SAMPLES = 300
SPLIT_TOLERANCE = 0.10
# Rows of the iris data; the erroring model refuses any row whose petal length is above 5.0.
ACCEPTED_ROW = [5.1, 3.5, 1.4, 0.2]
REFUSED_ROW = [6.7, 3.0, 5.2, 2.3]

ERRORING_SCRIPT = '''\
"""A model that raises on some inputs: any row whose petal length is above 5.0."""
import mlflow
import mlflow.pyfunc
import pandas as pd


class ShortPetalsOnly(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["petal length (cm)"] > 5.0).any():
            raise ValueError("petal length above 5.0 is not supported")
        return [0] * len(model_input)


example = pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=COLUMNS)
with mlflow.start_run():
    mlflow.pyfunc.log_model(name="model", python_model=ShortPetalsOnly(), input_example=example)
'''.replace("COLUMNS", repr(COLUMNS))


# No keep-alive: every request opens a connection of its own, and the Service picks a replica per
# connection. One client for all (creating one per request costs tens of milliseconds).
FRESH_CONNECTIONS = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)


def predict(url: str, row: list[float]) -> httpx.Response:
    """One request on a connection of its own."""
    return FRESH_CONNECTIONS.post(f"{url}/predict", json={"dataframe_split": {"columns": COLUMNS, "data": [row]}})


@dataclass
class Traffic:
    """Requests to the endpoint on a background thread until stopped: which version answered what."""

    url: str
    stable_version: str
    answers: Counter = field(default_factory=Counter)  # (version, status) -> count
    failures: list[str] = field(default_factory=list)  # no answer at all, or the stable answered an error
    canary_may_fail: bool = False  # while a canary that refuses some rows runs
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="canary-traffic", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        rows = (ACCEPTED_ROW, REFUSED_ROW, ACCEPTED_ROW)
        n = 0
        while not self._stop.is_set():
            row = rows[n % len(rows)]
            n += 1
            try:
                answer = predict(self.url, row)
            except httpx.HTTPError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            body = answer.json()
            version = str(body.get("model_version")) if answer.status_code == 200 else "error"
            self.answers[(version, answer.status_code)] += 1
            # Error answers do not say which version gave them; the stable version never refuses
            # these rows, so an error is the canary's unless the canary is not running.
            if answer.status_code != 200 and not self.canary_may_fail:
                self.failures.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
            time.sleep(0.02)


def canary_share(url: str, canary_version: str, samples: int = SPLIT_SAMPLES) -> float:
    """The share of ``samples`` fresh connections the canary answered; eight at a time, so that the
    measurement fits well inside a step's interval."""

    def version(_: int) -> str:
        answer = predict(url, ACCEPTED_ROW)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["model_version"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = Counter(pool.map(version, range(samples)))
    return versions[canary_version] / samples


def view(client: TestClient, deployment_id: str) -> dict:
    answer = client.get(f"/mlops/deployments/{deployment_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for(client: TestClient, deployment_id: str, predicate, what: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = view(client, deployment_id)
        if predicate(body):
            return body
        assert body["status"] not in ("failed", "timed_out", "cancelled"), (what, body["error"], body["steps"])
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {body}")


def in_analysis(step: str):
    return lambda body: (body.get("canary") or {}).get("phase") == "analysis" and body["canary"]["step"] == step


def finished(body: dict) -> bool:
    return body["status"] in ("deployed", "rolled_back")


def register_again(client: TestClient, model: str, version: str) -> str:
    """A new registered version of ``model`` from ``version``'s logged model, without training."""
    mlflow = client.app.state.services.mlflow
    registered = mlflow.get_version(model, version)
    return str(mlflow.register(model, registered.source, registered.run_id, tags={}).version)


def commit_message(bare, sha: str) -> str:
    return git("--git-dir", str(bare), "log", "-1", "--format=%B", sha)


def run_canary_releases(client: TestClient, bare, model: str, describe=lambda: "") -> None:
    """The whole flow; ``bare`` is the GitOps remote (a bare repository); ``describe`` says what runs
    behind the endpoint when a measured split is off."""
    began = time.monotonic()

    def mark(what: str) -> None:  # where the time goes, in the test's output (pytest -s)
        print(f"canary flow: {what} at {time.monotonic() - began:.1f} s")

    stable = client.post("/mlops/deploy", json=example_request(model, replicas=3))
    assert stable.status_code == 200 and stable.json()["status"] == "deployed", stable.text
    stable_body = stable.json()
    url = stable_body["deployment_url"]
    mark("stable deployed")

    # A healthy canary: two weighted steps with their measured split, then the promotion.
    healthy = register_again(client, model, "1")
    strategy = {
        "type": "canary",
        "steps": [25, 50, 100],
        "interval_seconds": 8,
        "analysis": {"max_error_rate": 0.05, "min_requests": 20},
    }
    with Traffic(url, "1") as traffic:
        started = client.post(
            f"/mlops/models/{model}/versions/{healthy}/deploy?wait=false",
            json={"strategy": strategy, "deployment_config": ONE_REPLICA},
        )
        assert started.status_code == 202, started.text
        deployment_id = started.json()["deployment_id"]
        assert started.json()["kind"] == "canary_deploy_version"
        for step, expected in (("1/2", 0.25), ("2/2", 0.50)):
            body = wait_for(client, deployment_id, in_analysis(step), f"step {step}")
            mark(f"step {step} analysing")
            share = canary_share(url, healthy)
            # Measured within the step: its analysis was still running when the last answer came.
            assert in_analysis(step)(view(client, deployment_id)), f"step {step} ended during the measurement"
            mark(f"step {step} measured: {share:.3f}")
            assert abs(share - expected) <= SPLIT_TOLERANCE, (step, share, body["canary"]["split"], describe())
        done = wait_for(client, deployment_id, finished, "the promotion")
    mark("healthy canary promoted")
    assert done["status"] == "deployed", done
    assert done["canary"]["phase"] == "promoted"
    assert [e["outcome"] for e in done["canary"]["evidence"]] == ["pass", "pass"]
    assert all(e["requests"] >= 20 for e in done["canary"]["evidence"])
    assert traffic.failures == [], traffic.failures[:5]
    assert {v for v, _ in traffic.answers} >= {"1", healthy}
    assert canary_share(url, healthy, samples=30) == 1.0
    subjects = git("--git-dir", str(bare), "log", "--format=%s", f"{stable_body['commit']}..{done['commit']}")
    assert subjects.splitlines() == [
        f"promote {model} v{healthy}",
        f"canary {model} v{healthy} at 50% (step 2/2)",
        f"canary {model} v{healthy} at 25% (step 1/2)",
    ]
    current = healthy

    # A canary whose model raises on some inputs: its analysis aborts it, and a commit restores the
    # stable files; the stable version serves throughout.
    promoted_sha = done["commit"]
    erroring_strategy = {**strategy, "steps": [50, 100]}
    with Traffic(url, current) as traffic:
        traffic.canary_may_fail = True
        request = {
            **example_request(model, replicas=1),
            "script_content": base64.b64encode(ERRORING_SCRIPT.encode()).decode(),
            "script_name": "train_erroring.py",
            "strategy": erroring_strategy,
        }
        started = client.post("/mlops/deploy?wait=false", json=request)
        assert started.status_code == 202, started.text
        deployment_id = started.json()["deployment_id"]
        aborted = wait_for(client, deployment_id, finished, "the analysis to abort", timeout=600)
        traffic.canary_may_fail = False
        time.sleep(1)  # the stable version alone again: no errors from here on
    mark("erroring canary aborted")
    assert aborted["status"] == "rolled_back", aborted
    canary = aborted["canary"]
    assert canary["phase"] == "aborted" and canary["evidence"][-1]["outcome"] == "fail"
    assert "error rate" in canary["abort_reason"]
    assert canary["evidence"][-1]["errors"] > 0
    assert traffic.failures == [], traffic.failures[:5]
    abort_message = commit_message(bare, aborted["commit"])
    assert abort_message.startswith(f"abort canary {model} v{aborted['model_version']}")
    assert "error rate" in abort_message and "max_error_rate=0.05" in abort_message
    assert "Action: rollback" in abort_message and f"Reverts-To: {promoted_sha}" in abort_message
    # The revert's files are the stable commit's, byte for byte.
    namespace = stable_body["namespace"]
    assert git("--git-dir", str(bare), "ls-tree", "-r", aborted["commit"], f"apps/{namespace}") == git(
        "--git-dir", str(bare), "ls-tree", "-r", promoted_sha, f"apps/{namespace}"
    )
    assert canary_share(url, current, samples=30) == 1.0  # the canary is gone

    # By hand: an abort, then a promotion, of canaries whose steps would otherwise run for long.
    slow = {**strategy, "steps": [50, 100], "interval_seconds": 3600}
    for action, expected_status in (("abort", "rolled_back"), ("promote", "deployed")):
        version = register_again(client, model, "1")
        started = client.post(
            f"/mlops/models/{model}/versions/{version}/deploy?wait=false",
            json={"strategy": slow, "deployment_config": ONE_REPLICA},
        )
        assert started.status_code == 202, started.text
        deployment_id = started.json()["deployment_id"]
        wait_for(client, deployment_id, in_analysis("1/1"), f"the canary to {action}")
        steered = client.post(f"/mlops/deployments/{deployment_id}/{action}")
        assert steered.status_code == 202, steered.text
        body = wait_for(client, deployment_id, finished, f"the {action}")
        mark(f"{action} by hand done")
        assert body["status"] == expected_status, body
        assert body["canary"]["steered_by"]
        message = commit_message(bare, body["commit"])
        assert ("aborted by" if action == "abort" else "promoted by") in message
        served = canary_share(url, version, samples=30)
        assert served == (1.0 if action == "promote" else 0.0)
        # A finished canary can no longer be steered.
        again = client.post(f"/mlops/deployments/{deployment_id}/{action}")
        assert again.status_code == 409 and again.json()["error"]["code"] == "canary_not_running"
