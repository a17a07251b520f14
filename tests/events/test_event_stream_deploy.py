"""The event stream of real deploys (train + register with target 'none'): what the orchestrator really writes."""

from __future__ import annotations

import pytest

from tests.events.wire import read_stream, stream_text
from tests.support.control import example_request, script

pytestmark = pytest.mark.timeout(600)


def _deploy_and_stream(client, body):
    accepted = client.post("/mlops/deploy?wait=false", json=body)
    assert accepted.status_code == 202, accepted.text
    deployment_id = accepted.json()["deployment_id"]
    # Opened while the deploy runs: the early part is replayed, the rest followed live.
    text, response = stream_text(client, f"/mlops/deployments/{deployment_id}/events")
    assert response.status_code == 200
    return deployment_id, read_stream(text)


def _step_transitions(events):
    return [(e.data["step"], e.data["status"]) for e in events if e.event == "step"]


def test_successful_deploy_streams_steps_in_pipeline_order_with_logs_and_end(client):
    deployment_id, events = _deploy_and_stream(client, example_request("iris-events"))

    assert _step_transitions(events) == [
        ("train", "running"),
        ("train", "succeeded"),
        ("register", "running"),
        ("register", "succeeded"),
    ]
    statuses = [e.data["status"] for e in events if e.event == "status"]
    assert statuses[-1] == "registered" and "registered" not in statuses[:-1]
    # The script prints its accuracy; the line arrives as a train log event while train runs.
    positions = {(e.event, e.data.get("step"), e.data.get("status")): i for i, e in enumerate(events)}
    train_logs = [i for i, e in enumerate(events) if e.event == "log" and e.data["step"] == "train"]
    assert train_logs, "no log lines were streamed"
    assert (
        positions[("step", "train", "running")] < min(train_logs)
        and max(train_logs) < positions[("step", "train", "succeeded")]
    )
    assert any(e.data["line"].startswith("accuracy=") for e in events if e.event == "log")

    end = events[-1]
    assert end.event == "end" and end.id is None
    view = client.get(f"/mlops/deployments/{deployment_id}").json()
    assert end.data == view
    assert end.data["status"] == "registered" and end.data["model_version"] == "1"
    ids = [e.id for e in events[:-1]]
    assert ids == sorted(set(ids))

    # A reconnect with the id of the train step's success replays exactly what came after it.
    cut = next(
        e.id for e in events if e.event == "step" and (e.data["step"], e.data["status"]) == ("train", "succeeded")
    )
    resumed = read_stream(
        stream_text(client, f"/mlops/deployments/{deployment_id}/events", {"Last-Event-ID": str(cut)})[0]
    )
    assert [e.id for e in resumed[:-1]] == [e.id for e in events[:-1] if e.id > cut]
    assert resumed[-1].data["status"] == "registered"


def test_failing_script_streams_the_failed_step_message_and_error(client):
    body = example_request(
        "broken-events",
        script_content=script("""
        import sys
        print("loading data")
        sys.exit("no data to train on")
    """),
        script_name="broken.py",
    )
    _, events = _deploy_and_stream(client, body)
    assert _step_transitions(events) == [("train", "running"), ("train", "failed")]
    failed = next(e for e in events if e.event == "step" and e.data["status"] == "failed")
    assert "no data to train on" in failed.data["message"]
    assert [e.data["status"] for e in events if e.event == "status"][-1] == "failed"
    end = events[-1]
    assert end.event == "end" and end.data["status"] == "failed"
    assert end.data["error"]["step"] == "train" and end.data["error"]["code"]
