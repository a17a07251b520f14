"""Argo CD + Kubernetes simulator for tests: a strict model of Argo CD v3.6 and the Kubernetes API,
written from their sources and documentation, independent of the code under test.

Usage::

    with Simulator(FakeKubelet(), work_dir=tmp_path, kustomize_cmd=kustomize_cmd,
                   contracts_dir=contracts_dir, namespaces=["mlops-models"],
                   source_repos=[repo_url]) as sim:
        ArgoCDSettings(server_url=sim.argocd_url, token=sim.argocd_token)
        KubernetesSettings(api_url=sim.kubernetes_url, token=sim.kubernetes_token)
        sim.set_faults(crash_loop=True, stale_reconcile_seconds=3)
    assert sim.checker.violations == []

See README.md for what is modelled, from which source, and what is not.
"""

from tests.simulator.argocd import ArgoCD, ArgoError, ArgoFaults, ArgoServer, projects_from_file
from tests.simulator.contracts import ContractChecker, ContractViolation, Violation
from tests.simulator.kube import Cluster, DockerKubelet, FakeKubelet, KubeError, KubeFaults, KubeServer
from tests.simulator.simulator import Simulator

__all__ = [
    "ArgoCD",
    "ArgoError",
    "ArgoFaults",
    "ArgoServer",
    "Cluster",
    "ContractChecker",
    "ContractViolation",
    "DockerKubelet",
    "FakeKubelet",
    "KubeError",
    "KubeFaults",
    "KubeServer",
    "Simulator",
    "Violation",
    "projects_from_file",
]
