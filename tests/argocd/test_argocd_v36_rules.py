"""The client against the rules of Argo CD v3.6 that decide whether a deploy works on a real server.

Each test names the rule (and where Argo CD's source states it); the simulator enforces it.
"""

from __future__ import annotations

import pytest

from control_api.adapters.argocd.client import ArgoCDApplicationDeleting, ArgoCDClient
from control_api.adapters.argocd.errors import (
    ArgoCDAuthFailed,
    ArgoCDOperationInProgress,
    ArgoCDRequestRejected,
    ArgoCDTLSFailed,
)
from control_api.adapters.argocd.wait import wait_for_sync
from control_api.adapters.kubernetes.rollout import RolloutDiagnosis
from control_api.errors import SyncFailed
from control_api.settings import ArgoCDSettings
from tests.simulator import FakeKubelet, Simulator
from tests.support.argocd_apps import APP_NAME, NAMESPACE, application_manifest

IMAGE = "registry.local/iris@sha256:" + "a" * 64
FINALIZER = "resources-finalizer.argocd.argoproj.io"


def _deploy(argocd, gitops_repo, image: str = IMAGE) -> str:
    sha = gitops_repo.commit_model(image)
    manifest = application_manifest(gitops_repo.url)
    manifest["metadata"]["finalizers"] = [FINALIZER]
    argocd.upsert_application(manifest)
    argocd.sync(APP_NAME, sha)
    return sha


# ---- application.go getAppEnforceRBAC: a missing app is 403 unless the request names the project ----


def test_a_missing_application_is_absent_not_forbidden(argocd, sim_server):
    assert argocd.get_application(APP_NAME) is None
    assert argocd.delete_application(APP_NAME) is False  # an undeploy of what is gone is not an error
    # The rule itself: without the project the same question is refused.
    import httpx

    response = httpx.get(
        f"{sim_server.url}/api/v1/applications/{APP_NAME}",
        headers={"Authorization": f"Bearer {argocd_token(sim_server)}"},
    )
    assert response.status_code == 403


def argocd_token(sim_server) -> str:
    from tests.simulator.argocd import DEFAULT_TOKEN

    return DEFAULT_TOKEN


def test_a_token_that_may_not_touch_the_project_is_an_auth_failure(simulator, gitops_repo):
    simulator.argocd.rbac.tokens["viewer-token"] = "viewer"
    settings = ArgoCDSettings(server_url=simulator.argocd_url, token="viewer-token")
    # role:readonly is not configured for "viewer": with the project named, Argo CD refuses.
    with ArgoCDClient(settings, retry_backoff_seconds=0.01) as viewer, pytest.raises(ArgoCDAuthFailed):
        viewer.get_application(APP_NAME)


# ---- util/argo/argo.go SetAppOperation, application.go Sync under automated sync -----------------


def test_a_sha_sync_is_refused_under_automated_sync_and_a_branch_sync_is_not(argocd, gitops_repo):
    sha = gitops_repo.commit_model(IMAGE)
    argocd.upsert_application(application_manifest(gitops_repo.url, automated=True))

    with pytest.raises(ArgoCDRequestRejected, match="auto-sync currently set to main"):
        argocd.sync(APP_NAME, sha)
    try:
        answer = argocd.sync(APP_NAME, None)
    except ArgoCDOperationInProgress:
        # Argo CD's own automated sync of the new app started first: it syncs the same head.
        answer = argocd.get_application(APP_NAME)
        operation = answer.get("operation") or answer["status"]["operationState"]["operation"]
    else:
        operation = answer["operation"]
    assert operation["sync"]["revision"] == sha  # Argo CD resolved the branch head


# ---- cmd/argocd/commands/app.go: wait for reconciledAt to pass the operation's finishedAt --------


def test_the_wait_ignores_status_written_before_the_reconcile(argocd, gitops_repo, simulator):
    first = _deploy(argocd, gitops_repo)
    wait_for_sync(argocd, APP_NAME, first, timeout=30, poll=0.05)

    # Version 2 crashes; the reconcile that would show it comes 4 s after the operation.
    simulator.set_faults(crash_loop=True, stale_reconcile_seconds=4)
    second = gitops_repo.commit_model("registry.local/iris@sha256:" + "b" * 64)
    argocd.sync(APP_NAME, second)

    # Until that reconcile, sync and health still say "Synced, Healthy" from version 1. Judging them
    # would report the broken version as deployed; the wait must end with the real verdict.
    with pytest.raises(SyncFailed):
        wait_for_sync(argocd, APP_NAME, second, timeout=60, poll=0.05)


# ---- a broken rollout names its pod and reason long before the 600 s progress deadline ----------


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"crash_loop": True}, "CrashLoopBackOff"),
        ({"image_pull_failure": True}, "ImagePullBackOff|ErrImagePull"),
        ({"oom": True}, "OOMKilled"),
        ({"unschedulable": True}, "Unschedulable"),
        ({"readiness_failing": True}, "ReadinessProbeFailed"),
    ],
    ids=["crash-loop", "image-pull", "oom", "unschedulable", "readiness"],
)
def test_a_failing_rollout_fails_fast_naming_the_pod_and_reason(
    argocd, kubernetes, gitops_repo, simulator, fault, reason
):
    import re

    simulator.set_faults(**fault)
    sha = _deploy(argocd, gitops_repo)
    diagnosis = RolloutDiagnosis(kubernetes, NAMESPACE, APP_NAME, grace_seconds=0)

    with pytest.raises(SyncFailed) as raised:
        wait_for_sync(argocd, APP_NAME, sha, timeout=60, poll=0.05, diagnose=lambda _state: diagnosis.check())

    error = raised.value
    assert error.code == "rollout_failed", error.message
    assert re.fullmatch(reason, error.details["reason"]), error.details
    pod = error.details["resource"]["name"]
    assert error.details["resource"]["kind"] == "Pod" and pod.startswith(f"{APP_NAME}-")
    assert pod in error.message
    # The pod is still Progressing in Argo CD's eyes: the diagnosis, not a Degraded app, ended it.
    application = argocd.get_application(APP_NAME)
    assert (application["status"].get("health") or {}).get("status") != "Degraded"


def test_a_crash_loop_keeps_the_containers_last_log_lines(argocd, kubernetes, gitops_repo, simulator):
    simulator.set_faults(crash_loop=True)
    sha = _deploy(argocd, gitops_repo)
    diagnosis = RolloutDiagnosis(kubernetes, NAMESPACE, APP_NAME, grace_seconds=0)
    with pytest.raises(SyncFailed) as raised:
        wait_for_sync(argocd, APP_NAME, sha, timeout=60, poll=0.05, diagnose=lambda _state: diagnosis.check())
    pod = raised.value.details["resource"]["name"]
    logs = kubernetes.pod_log(NAMESPACE, pod, container="server", previous=True)
    assert logs.strip(), "the simulator's crashing container wrote nothing"
    assert logs.strip().splitlines()[-1] in raised.value.message


def test_an_unschedulable_pod_gets_its_grace_period(argocd, kubernetes, gitops_repo, simulator):
    simulator.set_faults(unschedulable=True)
    _deploy(argocd, gitops_repo)
    now = [1000.0]
    diagnosis = RolloutDiagnosis(kubernetes, NAMESPACE, APP_NAME, grace_seconds=30, clock=lambda: now[0])
    _until(lambda: kubernetes.list_pods(NAMESPACE))
    diagnosis.check()  # first seen: not yet a failure
    assert diagnosis.first_seen
    now[0] += 29
    diagnosis.check()
    now[0] += 2
    with pytest.raises(SyncFailed, match="Unschedulable"):
        diagnosis.check()


# ---- application.go Delete: asynchronous, with the resources finalizer ---------------------------


def test_deletion_is_asynchronous_and_a_deleting_app_cannot_be_upserted(argocd, gitops_repo, cluster, simulator):
    sha = _deploy(argocd, gitops_repo)
    wait_for_sync(argocd, APP_NAME, sha, timeout=30, poll=0.05)
    # A paused controller holds the Application in its deleting state for as long as the checks take.
    simulator.argocd.controller.pause()
    try:
        assert argocd.delete_application(APP_NAME) is True
        deleting = argocd.get_application(APP_NAME)
        assert deleting is not None and deleting["metadata"].get("deletionTimestamp")
        with pytest.raises(ArgoCDApplicationDeleting):
            argocd.upsert_application(application_manifest(gitops_repo.url))
    finally:
        simulator.argocd.controller.resume()
    argocd.wait_deleted(APP_NAME, timeout=30)
    # The finalizer made Argo CD delete the model's resources before the Application.
    assert cluster.list("Deployment", NAMESPACE) == []
    assert cluster.list("Service", NAMESPACE) == []
    assert argocd.upsert_application(application_manifest(gitops_repo.url))["metadata"]["name"] == APP_NAME


# ---- TLS (docs/operator-manual/tls.md: argocd-server's self-signed certificate) and can-i ---------


@pytest.fixture
def tls_simulator(gitops_repo, tmp_path, kustomize_cmd, contracts_dir):
    sim = Simulator(
        FakeKubelet(),
        work_dir=tmp_path / "tls-simulator",
        kustomize_cmd=kustomize_cmd,
        contracts_dir=contracts_dir,
        namespaces=[NAMESPACE],
        source_repos=[gitops_repo.url],
        tls=True,
        tokens={"viewer-token": "viewer"},
        policy_csv="g, viewer, role:readonly",
    )
    with sim:
        yield sim
    assert sim.checker.violations == []


def test_tls_needs_the_ca_bundle_and_says_so(tls_simulator):
    assert tls_simulator.argocd_url.startswith("https://")
    without_ca = ArgoCDSettings(server_url=tls_simulator.argocd_url, token=tls_simulator.argocd_token)
    with (
        ArgoCDClient(without_ca, retry_backoff_seconds=0.01) as client,
        pytest.raises(ArgoCDTLSFailed, match="ca_bundle"),
    ):
        client.ping()
    with_ca = ArgoCDSettings(
        server_url=tls_simulator.argocd_url, token=tls_simulator.argocd_token, ca_bundle=tls_simulator.ca_path
    )
    with ArgoCDClient(with_ca, retry_backoff_seconds=0.01) as client:
        client.ping()
        assert client.get_application(APP_NAME) is None


def test_the_status_check_proves_the_token_may_sync(tls_simulator):
    settings = ArgoCDSettings(
        server_url=tls_simulator.argocd_url, token="viewer-token", ca_bundle=tls_simulator.ca_path
    )
    with ArgoCDClient(settings, retry_backoff_seconds=0.01) as viewer:
        assert viewer.can_i("applications", "get", "mlops-models/*") is True
        with pytest.raises(ArgoCDAuthFailed, match="may not sync"):
            viewer.ping()


def _until(condition, timeout: float = 20.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
