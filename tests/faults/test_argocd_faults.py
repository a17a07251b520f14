"""Argo CD faults through the control service, from the simulator's fault switches: the application
never turns ready (its readiness probe fails), and the LoadBalancer Service never gets an address.
Everything before the sync landed and must stay exactly once; a retry after the fault clears resumes at
the failed step."""

from __future__ import annotations

import httpx
import pytest

from tests.faults.consistency import check_consistency
from tests.support.deploys import deploy, retry, step_attempts, tiny_request

CASES = {
    # fault switches, ready timeout, (status, step, code), what the message must say
    # A readiness probe that keeps failing ends the wait once it lasted the grace period (30 s), long
    # before Argo CD's progress deadline would turn the app Degraded.
    "degraded": ({"readiness_failing": True}, 120, ("failed", "wait", "rollout_failed"), "Readiness probe failed"),
    # The first attempt must run out this clock; the retry after the fault clears gets the same one to
    # see the container ready, which on a loaded machine took more than 5 s.
    "no-ip": ({"no_ip": True}, 30, ("timed_out", "wait", "timed_out"), "no external IP or hostname"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_argocd_fault_keeps_one_commit_and_a_retry_resumes(start_service, cluster, kustomize_cmd, case):
    faults, ready_timeout, (status, step, code), fragment = CASES[case]
    client = start_service(target={"ready_timeout_seconds": ready_timeout})
    model = f"argo-{case}"
    cluster.simulator.set_faults(**faults)

    body = deploy(client, tiny_request(model))

    assert (body["status"], body["error"]["step"], body["error"]["code"]) == (status, step, code), body
    assert fragment in body["error"]["message"], body["error"]
    state = check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert state.versions == {model: {"1": body["deployment_id"]}} and len(state.tags[model]) == 1
    assert [c.deployment_id for c in state.commits if c.deployment_id] == [body["deployment_id"]]
    application = cluster.simulator.get_application(f"{body['namespace']}--{model}")
    assert application["status"]["sync"]["revision"] == body["commit"]

    cluster.simulator.clear_faults()
    final = retry(client, body["deployment_id"])

    assert final["status"] == "deployed", final
    attempts = step_attempts(final)
    assert (attempts["train"], attempts["push"], attempts["commit"], attempts["sync"]) == (1, 1, 1, 1)
    assert final["commit"] == body["commit"]
    state = check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert [c.deployment_id for c in state.commits if c.deployment_id] == [body["deployment_id"]]
    assert state.versions == {model: {"1": body["deployment_id"]}} and len(state.tags[model]) == 1
    assert httpx.get(final["endpoints"]["health"], timeout=10).status_code == 200
