"""Fixtures: a file:// GitOps repo with one Kustomize app, and the simulator serving it."""

from __future__ import annotations

import pytest

from control_api.adapters.argocd.client import ArgoCDClient
from control_api.adapters.kubernetes.services import KubernetesReader
from control_api.settings import ArgoCDSettings, KubernetesSettings
from tests.simulator import ContractChecker, FakeKubelet, Simulator
from tests.support.argocd_apps import NAMESPACE, GitOpsRepo


@pytest.fixture
def gitops_repo(tmp_path) -> GitOpsRepo:
    return GitOpsRepo(tmp_path)


@pytest.fixture
def simulator(gitops_repo, tmp_path, kustomize_cmd, contracts_dir):
    """Argo CD and the cluster it manages (FakeKubelet: no Docker), each behind its own HTTP server."""
    sim = Simulator(
        FakeKubelet(),
        work_dir=tmp_path / "simulator",
        kustomize_cmd=kustomize_cmd,
        contracts_dir=contracts_dir,
        namespaces=[NAMESPACE],
        source_repos=[gitops_repo.url],
        # 600 s of progressDeadlineSeconds pass in 6 s.
        progress_deadline_scale=0.01,
    )
    with sim:
        yield sim
    # Every test talks to the simulator within the published contracts unless it says otherwise.
    assert sim.checker.violations == []
    assert sim.cluster.errors == []


@pytest.fixture
def checker(simulator) -> ContractChecker:
    return simulator.checker


@pytest.fixture
def cluster(simulator):
    return simulator.cluster


@pytest.fixture
def sim_server(simulator):
    """The Argo CD API server (url, requests)."""
    return simulator.argo_server


@pytest.fixture
def argocd_settings(simulator) -> ArgoCDSettings:
    return ArgoCDSettings(server_url=simulator.argocd_url, token=simulator.argocd_token)


@pytest.fixture
def argocd(argocd_settings):
    with ArgoCDClient(argocd_settings, retry_backoff_seconds=0.01) as client:
        yield client


@pytest.fixture
def kubernetes(simulator):
    reader = KubernetesReader(
        KubernetesSettings(api_url=simulator.kubernetes_url, token=simulator.kubernetes_token),
        retry_backoff_seconds=0.01,
    )
    yield reader
    reader.close()
