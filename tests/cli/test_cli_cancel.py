"""``mlops cancel ID`` against a real control service process: it stops a training and waits until
the deployment is cancelled; a second cancel is refused with the server's error."""

from __future__ import annotations

import time

import httpx

from tests.support.cli import API_KEY, json_out, run_mlops
from tests.support.control import b64

SLEEPING_SCRIPT = 'import time\nprint("started", flush=True)\ntime.sleep(900)\n'
WAIT_SECONDS = 300


def test_cancel_stops_a_training_and_a_second_cancel_is_refused(service, home, cli_env):
    headers = {"X-API-Key": API_KEY}
    request = {
        "script_content": b64(SLEEPING_SCRIPT),
        "script_name": "train.py",
        "model_name": "cli-cancel",
        "requirements": ["scikit-learn"],
    }
    accepted = httpx.post(
        f"{service.url}/mlops/deploy", params={"wait": "false"}, json=request, headers=headers, timeout=30
    )
    assert accepted.status_code == 202, accepted.text
    deployment_id = accepted.json()["deployment_id"]
    deadline = time.monotonic() + WAIT_SECONDS
    while httpx.get(f"{service.url}/mlops/deployments/{deployment_id}", headers=headers).json()["status"] != "training":
        assert time.monotonic() < deadline, "the deploy never started training"
        time.sleep(0.1)

    result = run_mlops(["cancel", deployment_id, "--json"], home, cli_env)
    assert result.returncode == 0, result.stderr
    view = json_out(result)
    assert view["status"] == "cancelled", view
    assert view["error"]["step"] == "train"
    assert view["error"]["details"]["cancelled_by"] == "cli-tests"
    train = next(step for step in view["steps"] if step["name"] == "train")
    assert train["status"] == "cancelled"

    again = run_mlops(["cancel", deployment_id], home, cli_env)
    assert again.returncode == 4, again.stdout + again.stderr
    assert "deployment_finished" in again.stderr and "cancelled" in again.stderr
    after = httpx.get(f"{service.url}/mlops/deployments/{deployment_id}", headers=headers).json()
    assert after == view
