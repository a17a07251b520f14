"""Canary releases in the CLI, against a fake control service: the options build the request's ``strategy``
(or are refused before anything is sent), promote and abort post to their routes, the canary step's log
lines are shown without --logs, and the summary says how the canary ended."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from rich.console import Console

from control_api.api.schemas.requests import CanaryStrategy
from control_api.cli_user import app as cli_app
from control_api.cli_user.deploy_request import DeployArgumentError, build_canary_strategy
from control_api.cli_user.progress import LineProgress, LiveProgress, StepBoard
from control_api.client import ServerSentEvent

STEPS = [{"name": name, "status": "pending", "attempts": 0} for name in ("train", "register", "canary")]

ACCEPTED = {
    "deployment_id": "d1",
    "kind": "canary_deploy",
    "model_name": "iris",
    "endpoint": "iris",
    "model_version": None,
    "status": "pending",
    "namespace": "models",
    "steps": STEPS,
}

SPLIT_25 = "weight 25% asked; by replica ratio 1 canary : 3 stable = 25% of connections"
SPLIT_50 = "weight 50% asked; by replica ratio 2 canary : 2 stable = 50% of connections"

EVIDENCE = [
    {
        "step": "1/2",
        "weight": 25,
        "split": SPLIT_25,
        "summary": "57 requests, 0 errors (0.0%), p99 12.0 ms",
        "outcome": "pass",
        "requests": 57,
        "errors": 0,
        "error_rate": 0.0,
        "latency_ms": 12.0,
        "reasons": [],
        "thresholds": {"max_error_rate": 0.05},
    },
    {
        "step": "2/2",
        "weight": 50,
        "split": SPLIT_50,
        "summary": "61 requests, 9 errors (14.8%), p99 15.0 ms: error rate 14.8% above 5.0%",
        "outcome": "fail",
        "requests": 61,
        "errors": 9,
        "error_rate": 0.148,
        "latency_ms": 15.0,
        "reasons": ["error rate 14.8% above 5.0%"],
        "thresholds": {"max_error_rate": 0.05},
    },
]


def _canary(phase: str, evidence: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {
        "phase": phase,
        "steps": [25, 50, 100],
        "step": "2/2",
        "weight": 50,
        "split": SPLIT_50,
        "stable_version": "3",
        "stable_commit": "5d0c2f1aaaaabbbbbcccccdddddeeeeefffff000",
        "canary_version": "4",
        "evidence": evidence,
        "abort_reason": None,
        "steered_by": None,
        **more,
    }


PROMOTED = {
    **ACCEPTED,
    "status": "deployed",
    "model_version": "4",
    "duration_seconds": 130.0,
    "commit": "c0ffee0000000000000000000000000000000001",
    "inference_url": None,
    "steps": [{**step, "status": "succeeded", "attempts": 1} for step in STEPS],
    "canary": _canary("promoted", EVIDENCE[:1]),
}

ABORTED = {
    **PROMOTED,
    "status": "rolled_back",
    "commit": "abcdef0000000000000000000000000000000002",
    "canary": _canary("aborted", EVIDENCE, abort_reason="step 2/2 analysis failed: error rate 14.8% above 5.0%"),
}

CANARY_LINES = [
    f"step 1/2: {SPLIT_25}; synced 0123456789ab",
    "step 1/2 analysis: pass: 57 requests, 0 errors (0.0%), p99 12.0 ms",
]


def _events(final: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("step", {"step": "train", "status": "running", "at": "2026-01-01T00:00:00+00:00"}),
        ("log", {"step": "train", "line": "epoch 1 of the training"}),
        ("step", {"step": "train", "status": "succeeded", "at": "2026-01-01T00:00:05+00:00"}),
        ("step", {"step": "canary", "status": "running", "at": "2026-01-01T00:00:06+00:00"}),
        *(("log", {"step": "canary", "line": line}) for line in CANARY_LINES),
        ("step", {"step": "canary", "status": "succeeded", "at": "2026-01-01T00:02:00+00:00"}),
        ("end", final),
    ]


class _FakeService(BaseHTTPRequestHandler):
    """Answers the routes the canary commands use; records every request."""

    asked: ClassVar[list[tuple[str, str, Any]]] = []
    final: ClassVar[dict[str, Any]] = PROMOTED

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # the name http.server's handler API requires
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).asked.append(("POST", self.path, body))
        path = self.path.split("?")[0]
        if path.endswith("/not-a-canary/promote"):
            error = {"code": "not_a_canary", "message": "deployment d2 is not a canary release", "request_id": "r1"}
            self._answer(409, {"error": error})
        elif path in ("/mlops/deploy", "/mlops/models/iris/versions/4/deploy"):
            self._answer(202, ACCEPTED)
        elif path in ("/mlops/deployments/d1/promote", "/mlops/deployments/d1/abort"):
            self._answer(202, {**ACCEPTED, "status": "deploying", "model_version": "4"})
        else:
            self._answer(404, {"error": {"code": "not_found", "message": path}})

    def do_GET(self):  # the name http.server's handler API requires
        type(self).asked.append(("GET", self.path, None))
        path = self.path.split("?")[0]
        if path == "/mlops/deployments/d1/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for number, (kind, data) in enumerate(_events(type(self).final), start=1):
                self.wfile.write(f"id: {number}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode())
        elif path == "/mlops/deployments/d1":
            self._answer(200, type(self).final)
        else:
            self._answer(404, {"error": {"code": "not_found", "message": path}})

    def log_message(self, *args):
        pass


@pytest.fixture
def service():
    _FakeService.asked = []
    _FakeService.final = PROMOTED
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class _Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def mlops(monkeypatch, service, capsys):
    """Run the CLI in this process against the fake service; stdout of rich and of --json, stderr, exit code."""

    def run(*args: str) -> _Run:
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(cli_app, "console", Console(file=out, width=300, soft_wrap=True, color_system=None))
        monkeypatch.setattr(cli_app, "errors", Console(file=err, width=300, soft_wrap=True, color_system=None))
        with pytest.raises(SystemExit) as exited:
            cli_app.app([*args, "--server", service], standalone_mode=True)
        captured = capsys.readouterr()
        return _Run(exited.value.code, out.getvalue() + captured.out, err.getvalue() + captured.err)

    return run


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text("print('hi')\n")
    return str(path)


# ---- the request ------------------------------------------------------------------------------------


def test_canary_strategy_sends_only_what_was_given():
    assert build_canary_strategy(None) is None
    assert build_canary_strategy(" 25, 50 ,100") == {"type": "canary", "steps": [25, 50, 100]}
    assert build_canary_strategy(
        "10,100", interval_seconds=30, max_error_rate=0.0, max_latency_ms=250, latency_percentile=95, min_requests=5
    ) == {
        "type": "canary",
        "steps": [10, 100],
        "interval_seconds": 30,
        "analysis": {"max_error_rate": 0.0, "max_latency_ms": 250, "latency_percentile": 95, "min_requests": 5},
    }
    # What the CLI sends is what the service's schema takes (an omitted option is the server's default).
    full = build_canary_strategy("25,50", interval_seconds=5, max_error_rate=0.1, latency_percentile=90)
    assert CanaryStrategy.model_validate(full).model_dump() == {
        "type": "canary",
        "steps": [25, 50],
        "interval_seconds": 5,
        "analysis": {"max_error_rate": 0.1, "max_latency_ms": None, "latency_percentile": 90, "min_requests": 20},
    }
    with pytest.raises(DeployArgumentError, match=r"--max-latency-ms, --min-requests only apply to a canary"):
        build_canary_strategy(None, max_latency_ms=100, min_requests=3)
    for text in ("", "25,,50", "a,b", "25;50"):
        with pytest.raises(DeployArgumentError, match=r"expected weights in percent separated by commas"):
            build_canary_strategy(text)


def test_deploy_with_canary_options_posts_the_strategy(mlops, script):
    run = mlops(
        "deploy",
        script,
        "-m",
        "iris",
        "--canary",
        "25,50,100",
        "--canary-interval",
        "30",
        "--max-error-rate",
        "0.02",
        "--min-requests",
        "50",
    )
    assert run.code == 0, run.out + run.err
    method, path, body = _FakeService.asked[0]
    assert (method, path.split("?")[0]) == ("POST", "/mlops/deploy")
    assert body["strategy"] == {
        "type": "canary",
        "steps": [25, 50, 100],
        "interval_seconds": 30.0,
        "analysis": {"max_error_rate": 0.02, "min_requests": 50},
    }
    assert "as a canary in steps [25, 50, 100]" in run.out


def test_deploy_version_with_canary_posts_the_strategy_and_without_it_none(mlops):
    run = mlops("deploy-version", "iris", "4", "--canary", "50", "--max-latency-ms", "250")
    assert run.code == 0, run.out + run.err
    method, path, body = _FakeService.asked[0]
    assert (method, path.split("?")[0]) == ("POST", "/mlops/models/iris/versions/4/deploy")
    assert body == {"strategy": {"type": "canary", "steps": [50], "analysis": {"max_latency_ms": 250.0}}}
    _FakeService.asked.clear()
    _FakeService.final = {**PROMOTED, "canary": None}
    assert mlops("deploy-version", "iris", "4").code == 0
    assert _FakeService.asked[0][2] == {}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-error-rate", "0.1"], "--max-error-rate only apply to a canary release"),
        (["--canary-interval", "5", "--min-requests", "3"], "--canary-interval, --min-requests only apply"),
        (["--canary", "25,half"], "--canary '25,half': expected weights in percent"),
    ],
)
@pytest.mark.parametrize("command", ["deploy", "deploy-version"])
def test_canary_usage_errors_exit_2_and_send_nothing(mlops, script, command, args, message):
    head = ["deploy", script, "-m", "iris"] if command == "deploy" else ["deploy-version", "iris", "4"]
    run = mlops(*head, *args)
    assert run.code == 2, run.out + run.err
    assert message in run.err
    assert _FakeService.asked == []


# ---- following and the summary -------------------------------------------------------------------


def test_canary_log_lines_are_shown_without_logs_and_the_promotion_is_summarised(mlops, script):
    run = mlops("deploy", script, "-m", "iris", "--canary", "25,50,100")
    assert run.code == 0, run.out + run.err
    for line in CANARY_LINES:
        assert f"  canary | {line}" in run.out
    assert "epoch 1 of the training" not in run.out  # other steps' lines need --logs
    lines = run.out.splitlines()
    summary = lines[next(i for i, line in enumerate(lines) if line.startswith("deployed iris version 4")) :]
    assert summary[1:4] == [
        "  canary promoted (steps 25%, 50%, 100%)",
        "  step 1/2 at 25%: pass: 57 requests, 0 errors (0.0%), p99 12.0 ms",
        "  commit c0ffee0000000000000000000000000000000001",
    ]
    with_logs = mlops("deploy", script, "-m", "iris", "--logs")
    assert "  train | epoch 1 of the training" in with_logs.out


def test_an_aborted_canary_is_summarised_with_its_reason_and_evidence_and_exits_1(mlops, script):
    _FakeService.final = ABORTED
    run = mlops("deploy", script, "-m", "iris", "--canary", "25,50,100")
    assert run.code == 1, run.out + run.err
    lines = run.out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("canary aborted: "))
    assert lines[start] == "canary aborted: iris version 4 was rolled back to version 3 in 130.0s"
    assert lines[start + 1 : start + 6] == [
        "  canary aborted (steps 25%, 50%, 100%): step 2/2 analysis failed: error rate 14.8% above 5.0%",
        "  step 1/2 at 25%: pass: 57 requests, 0 errors (0.0%), p99 12.0 ms",
        "  step 2/2 at 50%: fail: 61 requests, 9 errors (14.8%), p99 15.0 ms: error rate 14.8% above 5.0%",
        "  commit abcdef0000000000000000000000000000000002",
        "  details: mlops deployments d1",
    ]


def test_live_progress_prints_canary_log_lines_without_show_logs():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200, color_system=None)
    board = StepBoard.from_view(ACCEPTED)
    with LiveProgress(board, console) as progress:
        for number, (kind, data) in enumerate(_events(PROMOTED), start=1):
            progress.update(ServerSentEvent(kind, json.dumps(data), str(number)))
    text = buffer.getvalue()
    assert all(f"canary | {line}" in text for line in CANARY_LINES)
    assert "train | epoch 1" not in text
    plain = io.StringIO()
    with LineProgress(StepBoard.from_view(ACCEPTED), Console(file=plain, width=200)) as lines:
        lines.update(ServerSentEvent("log", json.dumps({"step": "canary", "line": CANARY_LINES[0]}), "1"))
        lines.update(ServerSentEvent("log", json.dumps({"step": "build", "line": "layer 3"}), "2"))
    assert plain.getvalue() == f"  canary | {CANARY_LINES[0]}\n"


# ---- promote and abort ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, final, code, heading",
    [
        ("promote", PROMOTED, 0, "promoting the canary of iris (deployment d1)"),
        ("abort", ABORTED, 0, "aborting the canary of iris (deployment d1)"),
    ],
)
def test_promote_and_abort_post_to_their_route_and_follow_to_the_end(mlops, command, final, code, heading):
    _FakeService.final = final
    run = mlops(command, "d1")
    assert run.code == code, run.out + run.err
    assert [(m, p.split("?")[0]) for m, p, _ in _FakeService.asked] == [
        ("POST", f"/mlops/deployments/d1/{command}"),
        ("GET", "/mlops/deployments/d1/events"),
    ]
    assert run.out.splitlines()[0] == heading
    assert f"canary {final['canary']['phase']}" in run.out


def test_promote_and_abort_no_wait_and_json(mlops):
    run = mlops("abort", "d1", "--no-wait")
    assert run.code == 0, run.out + run.err
    assert [(m, p) for m, p, _ in _FakeService.asked] == [("POST", "/mlops/deployments/d1/abort")]
    assert "accepted: canary_deploy d1 of iris (deploying)" in run.out
    _FakeService.asked.clear()
    _FakeService.final = ABORTED
    scripted = mlops("abort", "d1", "--json")
    assert scripted.code == 0 and json.loads(scripted.out)["canary"]["phase"] == "aborted"
    promoted_then_aborted = mlops("promote", "d1", "--json")
    assert promoted_then_aborted.code == 1  # promote asked, but the canary ended rolled back
    refused = mlops("promote", "not-a-canary")
    assert refused.code == 4
    assert "not a canary release" in refused.err and "not_a_canary" in refused.err


def test_deployments_id_shows_the_canary_block(mlops):
    _FakeService.final = ABORTED
    run = mlops("deployments", "d1")
    assert run.code == 0, run.out + run.err
    assert "  canary        aborted (steps 25%, 50%, 100%)" in run.out
    assert f"  canary step   2/2: {SPLIT_50}" in run.out
    assert "  stable        version 3 at 5d0c2f1aaaaa" in run.out
    assert "  abort reason  step 2/2 analysis failed: error rate 14.8% above 5.0%" in run.out
    assert "  evidence      step 1/2 at 25%: pass: " in run.out
    assert "                step 2/2 at 50%: fail: 61 requests" in run.out
    _FakeService.final = {**PROMOTED, "canary": None}
    assert "  canary        " not in mlops("deployments", "d1").out
