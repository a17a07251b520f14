"""Simulator: one simulated cluster (Kubernetes API server, controllers, kubelet, kube-proxy) and the
Argo CD that manages it, each behind its own HTTP server, as a client meets them in production:
``argocd.server_url`` -> ``argocd_url``, ``kubernetes.api_url`` -> ``kubernetes_url``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.simulator.argocd import DEFAULT_TOKEN as ARGOCD_TOKEN
from tests.simulator.argocd import ArgoCD, ArgoFaults, ArgoServer
from tests.simulator.contracts import ContractChecker
from tests.simulator.kube import Cluster, KubeFaults, Kubelet, KubeServer
from tests.simulator.kube.rbac import RbacPolicy
from tests.simulator.kube.server import DEFAULT_TOKEN as KUBERNETES_TOKEN

# Switches that exist on both APIs: set on one name, they apply to both servers.
BOTH_APIS = {"unauthorized": ("unauthorized", "api_unauthorized"), "flaky_5xx": ("flaky_5xx", "api_flaky_5xx")}


class Simulator:
    def __init__(
        self,
        kubelet: Kubelet,
        *,
        work_dir: Path,
        kustomize_cmd: list[str],
        contracts_dir: Path,
        tls: bool = False,
        namespaces: list[str] | tuple[str, ...] = (),
        source_repos: list[str] | None = None,
        controller_period: float = 0.2,
        progress_deadline_scale: float = 1.0,
        kubernetes_token: str = KUBERNETES_TOKEN,
        kubernetes_rbac: RbacPolicy | None = None,
        **argocd_options: Any,
    ) -> None:
        """``namespaces`` exist in the cluster from the start and are added to the AppProjects'
        destinations; ``source_repos`` replace the projects' repository URL (projects_from_file).
        ``kubernetes_rbac`` restricts the Kubernetes token to a service account's roles.
        ``argocd_options`` go to ArgoCD (token, username, password, policy_csv, reconcile_lag, ...)."""
        self.argocd_token = argocd_options.get("token", ARGOCD_TOKEN)
        self.kubernetes_token = kubernetes_token
        self.checker = ContractChecker(contracts_dir)
        self.cluster = Cluster(
            kubelet,
            checker=self.checker,
            controller_period=controller_period,
            progress_deadline_scale=progress_deadline_scale,
        )
        self.kube_server: KubeServer | None = None
        self.argo_server: ArgoServer | None = None
        try:
            for namespace in namespaces:
                self.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            self.argocd = ArgoCD(
                self.cluster,
                work_dir=Path(work_dir) / "argocd",
                kustomize_cmd=kustomize_cmd,
                source_repos=source_repos,
                namespaces=list(namespaces),
                **argocd_options,
            )
            self.kube_server = KubeServer(self.cluster, token=kubernetes_token, rbac=kubernetes_rbac)
            self.argo_server = ArgoServer(self.argocd, self.checker, tls=tls)
        except BaseException:
            self.close()
            raise

    def start(self) -> Simulator:
        try:
            self.kube_server.start()
            self.argo_server.start()
        except BaseException:
            self.close()
            raise
        return self

    # ---- what a client is configured with ------------------------------------------------------

    @property
    def argocd_url(self) -> str:
        return self.argo_server.url

    @property
    def kubernetes_url(self) -> str:
        return self.kube_server.url

    @property
    def ca_path(self) -> Path | None:
        return self.argo_server.ca_path

    # ---- faults --------------------------------------------------------------------------------

    def set_faults(self, **switches: Any) -> None:
        """Argo CD and Kubernetes switches by name; ``unauthorized``/``flaky_5xx`` hit both APIs."""
        argocd: dict[str, Any] = {}
        kube: dict[str, Any] = {}
        for name, value in switches.items():
            if name in BOTH_APIS:
                argocd[BOTH_APIS[name][0]] = value
                kube[BOTH_APIS[name][1]] = value
            elif name in ArgoFaults.names():
                argocd[name] = value
            elif name in KubeFaults.names():
                kube[name] = value
            else:
                raise ValueError(f"unknown fault switch {name!r}")
        self.argocd.set_faults(**argocd)
        if kube:
            self.cluster.set_faults(**kube)

    def clear_faults(self) -> None:
        self.argocd.clear_faults()
        self.cluster.clear_faults()

    def get_application(self, name: str) -> dict | None:
        """The stored Application (test helper: no RBAC, no HTTP)."""
        return self.argocd.store.get(name)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """No Argo CD operation pending and no rollout step or container start in flight."""
        self.argocd.wait_idle(timeout)
        self.cluster.wait_idle(timeout)

    # ---- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop both servers, the controller, the cluster's loops, containers, proxies and hosts lines.
        Closing twice is harmless."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            if self.argo_server is not None:
                self.argo_server.stop()
            if self.kube_server is not None:
                self.kube_server.stop()
        finally:
            self.cluster.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
