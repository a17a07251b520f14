"""Each simulator fault switch, seen through the client: the right project error, with Argo CD's words."""

from __future__ import annotations

import pytest

from control_api.adapters.argocd.client import ArgoCDClient
from control_api.adapters.argocd.errors import ArgoCDAuthFailed
from control_api.adapters.argocd.wait import wait_for_sync
from control_api.errors import DeploymentTimedOut, ServiceUnavailable, SyncFailed
from control_api.settings import ArgoCDSettings
from tests.support.argocd_apps import APP_NAME, application_manifest, model_objects


def _deploy(argocd, gitops_repo, digest_char: str = "a") -> str:
    sha = gitops_repo.commit_model("registry.local/iris@sha256:" + digest_char * 64)
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, sha)
    return sha


def test_sync_error_fails_the_wait_naming_the_resource(argocd, gitops_repo, simulator):
    simulator.set_faults(sync_error='admission webhook denied the request: image "x" is not signed')
    sha = _deploy(argocd, gitops_repo)

    with pytest.raises(SyncFailed) as failure:
        wait_for_sync(argocd, APP_NAME, sha, timeout=20, poll=0.05)

    assert 'image "x" is not signed' in failure.value.message
    assert failure.value.details["resource"]["kind"] == "Deployment"
    assert failure.value.details["resource"]["name"] == APP_NAME


def test_a_deployment_kubernetes_refuses_is_a_failed_sync(argocd, gitops_repo):
    # The API server rejects the apply (422): Argo CD reports the resource SyncFailed.
    files = model_objects(APP_NAME, "registry.local/iris@sha256:" + "a" * 64)
    files["deployment.yaml"]["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "other"}
    sha = gitops_repo.commit_files("apps/iris", files, "selector that matches nothing")
    argocd.upsert_application(application_manifest(gitops_repo.url))
    argocd.sync(APP_NAME, sha)

    with pytest.raises(SyncFailed, match="selector"):
        wait_for_sync(argocd, APP_NAME, sha, timeout=20, poll=0.05)


def test_degraded_health_fails_the_wait_with_the_resource_message(argocd, gitops_repo, simulator):
    simulator.set_faults(crash_loop=True)
    sha = _deploy(argocd, gitops_repo)

    with pytest.raises(SyncFailed) as failure:
        wait_for_sync(argocd, APP_NAME, sha, timeout=60, poll=0.05)

    assert "exceeded its progress deadline" in failure.value.message
    assert failure.value.details["resource"] == {
        "kind": "Deployment",
        "name": APP_NAME,
        "namespace": "mlops-models",
        "message": 'Deployment "iris" exceeded its progress deadline',
    }


def test_no_ip_keeps_the_app_progressing_until_the_wait_times_out(argocd, gitops_repo, simulator):
    simulator.set_faults(no_ip=True)
    sha = _deploy(argocd, gitops_repo)

    with pytest.raises(DeploymentTimedOut, match="health=Progressing"):
        wait_for_sync(argocd, APP_NAME, sha, timeout=1.5, poll=0.1)


def test_unauthorized_is_a_terminal_auth_error(argocd, simulator):
    simulator.set_faults(unauthorized=True)

    with pytest.raises(ArgoCDAuthFailed) as failure:
        argocd.get_application(APP_NAME)
    assert failure.value.code == "argocd_auth_failed"
    with pytest.raises(ArgoCDAuthFailed):
        argocd.ping()


def test_wrong_token_is_an_auth_error(sim_server):
    settings = ArgoCDSettings(server_url=sim_server.url, token="not-the-token")
    with ArgoCDClient(settings) as client, pytest.raises(ArgoCDAuthFailed):
        client.get_application(APP_NAME)


def test_flaky_5xx_is_retried_transparently(argocd, gitops_repo, simulator, sim_server):
    simulator.set_faults(flaky_5xx=True)
    sha = _deploy(argocd, gitops_repo)

    state = wait_for_sync(argocd, APP_NAME, sha, timeout=20, poll=0.05)

    assert state.done
    assert sum(1 for r in sim_server.requests if r == ("POST", f"/api/v1/applications/{APP_NAME}/sync")) == 2


def test_persistent_5xx_is_service_unavailable_after_bounded_retries(argocd_settings, simulator):
    simulator.set_faults(flaky_5xx=True)
    with ArgoCDClient(argocd_settings, max_attempts=1) as client, pytest.raises(ServiceUnavailable):
        client.ping()


def test_unreachable_server_is_service_unavailable():
    settings = ArgoCDSettings(server_url="http://127.0.0.1:9", token="t")
    with (
        ArgoCDClient(settings, max_attempts=2, retry_backoff_seconds=0.01) as client,
        pytest.raises(ServiceUnavailable, match="unreachable"),
    ):
        client.ping()


def test_session_login_and_relogin_after_expiry(sim_server, simulator):
    settings = ArgoCDSettings(server_url=sim_server.url, username="admin", password="sim-password")
    with ArgoCDClient(settings) as client:
        assert client.get_application(APP_NAME) is None
        simulator.argocd.expire_sessions()
        assert client.get_application(APP_NAME) is None

    logins = [r for r in sim_server.requests if r == ("POST", "/api/v1/session")]
    assert len(logins) == 2


def test_wrong_password_is_an_auth_error(sim_server):
    settings = ArgoCDSettings(server_url=sim_server.url, username="admin", password="wrong")
    with ArgoCDClient(settings) as client, pytest.raises(ArgoCDAuthFailed):
        client.ping()  # ping is unauthenticated in Argo CD, but the client logs in before any request
