"""The event stream against journal writes made while it is open: live following, resume, ends, errors.

No training here: a writer thread drives a deployment's journal the way the orchestrator does, so the
stream has to pick events up while they happen (and stop at the right status).
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.events.wire import read_stream, stream_text
from tests.support.control import assert_error_format

pytestmark = pytest.mark.timeout(60)  # a stream that never ends must fail, not hang

STEPS = ["train", "register"]


def _new_deployment(client, model_name="synthetic"):
    journal = client.app.state.services.journal
    record = journal.create(
        kind="deploy", model_name=model_name, namespace="mlops-models", request={}, step_names=STEPS
    )
    return journal, record.id


def _drive(journal, deployment_id, final_status="registered", pause=0.05):
    """What the orchestrator writes for a two-step deploy, with pauses so the stream must poll for it."""
    for step, line in (("train", "epoch 1 loss=0.3"), ("register", None)):
        journal.set_status(deployment_id, "training" if step == "train" else "registering")
        journal.step_started(deployment_id, step)
        time.sleep(pause)
        if line:
            journal.add_log(deployment_id, step, [line, "done"])
        time.sleep(pause)
        journal.step_finished(
            deployment_id,
            step,
            "succeeded",
            message=f"{step} ok",
            outputs={"model_version": "7"} if step == "register" else None,
        )
    journal.set_status(deployment_id, final_status, finished=final_status != "awaiting_review")


def test_stream_follows_live_writes_in_order_and_ends_with_the_view(client):
    journal, deployment_id = _new_deployment(client)
    writer = threading.Thread(target=_drive, args=(journal, deployment_id), kwargs={"pause": 0.4})
    writer.start()
    try:
        body, response = stream_text(client, f"/mlops/deployments/{deployment_id}/events")
    finally:
        writer.join()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = read_stream(body)
    kinds = [(e.event, e.data.get("step"), e.data.get("status") or e.data.get("line")) for e in events]
    assert kinds == [
        ("status", None, "training"),
        ("step", "train", "running"),
        ("log", "train", "epoch 1 loss=0.3"),
        ("log", "train", "done"),
        ("step", "train", "succeeded"),
        ("status", None, "registering"),
        ("step", "register", "running"),
        ("step", "register", "succeeded"),
        ("status", None, "registered"),
        ("end", None, "registered"),
    ]
    ids = [e.id for e in events[:-1]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and all(i and i > 0 for i in ids)
    assert all(e.data["id"] == e.id for e in events[:-1])
    end = events[-1]
    assert end.id is None  # resuming after the end replays nothing new
    assert end.data["deployment_id"] == deployment_id and end.data["model_version"] == "7"
    assert [s["status"] for s in end.data["steps"]] == ["succeeded", "succeeded"]
    assert events[4].data["message"] == "train ok"


def test_last_event_id_resumes_after_that_event(client):
    journal, deployment_id = _new_deployment(client)
    _drive(journal, deployment_id, pause=0)
    full = read_stream(stream_text(client, f"/mlops/deployments/{deployment_id}/events")[0])
    cut = full[3].id
    resumed = read_stream(
        stream_text(client, f"/mlops/deployments/{deployment_id}/events", {"Last-Event-ID": str(cut)})[0]
    )
    assert [(e.id, e.event, e.data) for e in resumed[:-1]] == [(e.id, e.event, e.data) for e in full[4:-1]]
    assert resumed[-1].event == "end"
    by_query = read_stream(stream_text(client, f"/mlops/deployments/{deployment_id}/events?after={cut}")[0])
    assert [e.id for e in by_query] == [e.id for e in resumed]
    # After the last event only the end is left.
    tail = read_stream(
        stream_text(client, f"/mlops/deployments/{deployment_id}/events", {"Last-Event-ID": str(full[-2].id)})[0]
    )
    assert [e.event for e in tail] == ["end"]


def test_the_stream_follows_a_deploy_through_awaiting_review_to_its_end(client):
    journal, deployment_id = _new_deployment(client, "reviewed")
    _drive(journal, deployment_id, final_status="awaiting_review", pause=0)

    def merged_later():
        time.sleep(1.0)  # the stream has shown awaiting_review and is waiting for more
        journal.set_status(deployment_id, "syncing")
        journal.set_status(deployment_id, "deployed", finished=True)

    writer = threading.Thread(target=merged_later)
    writer.start()
    try:
        events = read_stream(stream_text(client, f"/mlops/deployments/{deployment_id}/events")[0])
    finally:
        writer.join()
    statuses = [e.data["status"] for e in events if e.event == "status"]
    assert statuses[-3:] == ["awaiting_review", "syncing", "deployed"]
    assert events[-1].event == "end" and events[-1].data["status"] == "deployed"


def test_failed_step_message_and_error_reach_the_end_event(client):
    journal, deployment_id = _new_deployment(client, "broken")
    journal.step_started(deployment_id, "train")
    journal.step_finished(deployment_id, "train", "failed", message="the training script exited with code 1")
    journal.set_status(
        deployment_id, "failed", error={"code": "training_failed", "message": "exit 1", "step": "train"}, finished=True
    )
    events = read_stream(stream_text(client, f"/mlops/deployments/{deployment_id}/events")[0])
    assert [(e.event, e.data.get("status")) for e in events] == [
        ("step", "running"),
        ("step", "failed"),
        ("status", "failed"),
        ("end", "failed"),
    ]
    assert events[1].data["message"] == "the training script exited with code 1"
    assert events[-1].data["error"]["code"] == "training_failed"


def test_unknown_deployment_is_a_404_in_the_standard_format(client):
    response = client.get("/mlops/deployments/does-not-exist/events")
    assert_error_format(response, 404, "deployment_not_found")


@pytest.mark.parametrize("bad", ["abc", "-3"])
def test_malformed_last_event_id_is_refused(client, bad):
    _journal, deployment_id = _new_deployment(client, f"bad-id-{len(bad)}")
    response = client.get(f"/mlops/deployments/{deployment_id}/events", headers={"Last-Event-ID": bad})
    error = assert_error_format(response, 422, "validation_error")
    assert error["details"][0]["field"] == "Last-Event-ID"
