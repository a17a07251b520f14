"""/mlops/status answers at its deadline even when a component hangs, and never runs two checks of one
component at once."""

from __future__ import annotations

import threading

from control_api.api.routes import status as status_route
from control_api.checks import CheckRunner

NEVER = 120  # a bound, so a broken runner fails the test instead of hanging it


def test_a_hung_check_is_left_out_and_not_started_twice():
    runner = CheckRunner(max_workers=4)
    release = threading.Event()
    calls = {"hung": 0, "quick": 0}

    def hung():
        calls["hung"] += 1
        release.wait(NEVER)
        return "late"

    def quick():
        calls["quick"] += 1
        return "ok"

    try:
        first = runner.run({"hung": hung, "quick": quick}, timeout=0.2)
        second = runner.run({"hung": hung, "quick": quick}, timeout=0.2)
        assert not release.is_set()
        assert first == second == {"quick": "ok"}
        assert calls == {"hung": 1, "quick": 2}  # the second call waited on the same hung run
        release.set()
        assert runner.run({"hung": hung}, timeout=NEVER) == {"hung": "late"}
    finally:
        release.set()
        runner.close()


def test_status_answers_at_its_deadline_with_a_hung_component(client, monkeypatch):
    release = threading.Event()
    services = client.app.state.services
    monkeypatch.setattr(status_route, "CHECK_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(services, "extra_checks", lambda: {"hanging": lambda: release.wait(NEVER)})
    try:
        response = client.get("/mlops/status")
        answered_while_hung = not release.is_set()
    finally:
        release.set()
    assert answered_while_hung
    assert response.status_code == 503, response.text
    assert response.json()["components"]["hanging"] == {
        "status": "unhealthy",
        "latency_ms": 500,
        "error": "check timed out",
    }
