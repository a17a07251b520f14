"""Shared pieces of the Argo CD simulator tests: a GitOps repo, manifests, and a running simulator
(FakeKubelet cluster + Argo CD) reached over HTTP the way the ``argocd`` CLI reaches argocd-server."""

from __future__ import annotations

import io
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from tests.simulator.argocd import DEFAULT_TOKEN, ArgoCD, ArgoServer, projects_from_file
from tests.simulator.contracts import ContractChecker
from tests.simulator.kube import Cluster, FakeKubelet

APP = "iris"
PROJECT = "mlops-models"
NAMESPACE = "mlops-models"
APP_PATH = "apps/iris"
IN_CLUSTER = "https://kubernetes.default.svc"


def image(tag: str) -> str:
    return f"registry.local/iris@sha256:{tag * (64 // len(tag))}"


def model_files(image_ref: str, *, with_service: bool = True) -> dict[str, dict]:
    labels = {"app.kubernetes.io/name": APP}
    files = {
        "deployment.yaml": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": APP, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "server", "image": image_ref, "ports": [{"name": "http", "containerPort": 8080}]}
                        ]
                    },
                },
            },
        },
        "service.yaml": {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": APP, "labels": labels},
            "spec": {"type": "LoadBalancer", "selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    }
    if not with_service:
        del files["service.yaml"]
    files["kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": sorted(f for f in files if f != "kustomization.yaml"),
    }
    return files


class GitOpsRepo:
    """A bare repo (what Argo CD reads) and a working clone the test commits into."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "gitops.git"
        self.work = root / "gitops-work"
        subprocess.run(["git", "init", "--bare", "--quiet", "--initial-branch=main", str(self.bare)], check=True)
        subprocess.run(["git", "clone", "--quiet", str(self.bare), str(self.work)], check=True, capture_output=True)

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, files: dict[str, dict], folder: str = APP_PATH) -> str:
        target = self.work / folder
        target.mkdir(parents=True, exist_ok=True)
        for existing in target.glob("*.yaml"):
            if existing.name not in files:
                existing.unlink()
        for name, document in files.items():
            stream = io.StringIO()
            YAML(typ="safe", pure=True).dump(document, stream)
            (target / name).write_text(stream.getvalue())
        self._git("add", "-A")
        self._git("-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "--quiet", "-m", "change")
        self._git("push", "--quiet", "origin", "HEAD:main")
        return self._git("rev-parse", "HEAD").strip()

    def _git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.work, check=True, capture_output=True, text=True).stdout


def application(
    repo_url: str, *, automated: bool = False, project: str = PROJECT, namespace: str = NAMESPACE, **metadata: Any
) -> dict:
    spec: dict[str, Any] = {
        "project": project,
        "source": {"repoURL": repo_url, "path": APP_PATH, "targetRevision": "main"},
        "destination": {"server": IN_CLUSTER, "namespace": namespace},
    }
    if automated:
        spec["syncPolicy"] = {"automated": {"prune": True, "selfHeal": True}}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": APP, "namespace": "argocd", **metadata},
        "spec": spec,
    }


def wait_for(
    predicate: Callable[[], Any], what: str, timeout: float = 60.0, last_seen: Callable[[], Any] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; last seen: {last_seen()}" if last_seen else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{seen}")
        time.sleep(0.05)


@dataclass
class Sim:
    repo: GitOpsRepo
    cluster: Cluster
    argocd: ArgoCD
    server: ArgoServer
    checker: ContractChecker
    api: httpx.Client

    def client(self, token: str | None = DEFAULT_TOKEN, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.server.url,
            headers=headers,
            timeout=30,
            verify=ssl.create_default_context(cafile=str(self.server.ca_path)) if self.server.ca_path else True,
            **kwargs,
        )

    def app(self, **params: Any) -> httpx.Response:
        return self.api.get(f"/api/v1/applications/{APP}", params=params)

    def create(self, manifest: dict | None = None, **params: Any) -> dict:
        response = self.api.post("/api/v1/applications", json=manifest or application(self.repo.url), params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def sync(self, revision: str | None = None, **body: Any) -> httpx.Response:
        if revision:
            body["revision"] = revision
        return self.api.post(f"/api/v1/applications/{APP}/sync", json=body)

    def wait_operation(self, revision: str | None = None, timeout: float = 60.0) -> dict:
        """Until the last operation finished (and was for ``revision`` when given); returns the app."""

        def finished() -> dict | None:
            body = self.app().json()
            state = (body.get("status") or {}).get("operationState") or {}
            if body.get("operation") or state.get("phase") in (None, "Running"):
                return None
            if revision and (state.get("syncResult") or {}).get("revision") != revision:
                return None
            return body

        return wait_for(finished, f"the operation on {APP} to finish", timeout)

    def wait_reconciled(
        self, revision: str, *, sync: str = "Synced", health: str | None = "Healthy", timeout: float = 60.0
    ) -> dict:
        """Until status.sync (and health) describe ``revision``, as ``argocd app wait`` decides."""
        last: dict = {}

        def done() -> dict | None:
            body = self.app().json()
            last["status"] = body.get("status")
            status = body.get("status") or {}
            state = status.get("operationState") or {}
            if (
                body.get("operation")
                or not state.get("finishedAt")
                or status.get("reconciledAt", "") < state["finishedAt"]
            ):
                return None
            if (status.get("sync") or {}).get("revision") != revision or status["sync"].get("status") != sync:
                return None
            if health and (status.get("health") or {}).get("status") != health:
                return None
            return body

        return wait_for(done, f"{APP} to be {sync}/{health} at {revision[:8]}", timeout, lambda: last)


def start_sim(
    tmp_path: Path,
    contracts_dir: Path,
    kustomize_cmd: list[str],
    *,
    tls: bool = False,
    projects: list[dict] | None = None,
    **argocd_options: Any,
) -> Sim:
    repo = GitOpsRepo(tmp_path)
    checker = ContractChecker(contracts_dir)
    cluster = Cluster(FakeKubelet(), checker=checker)
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    argocd = ArgoCD(
        cluster,
        work_dir=tmp_path / "argocd",
        kustomize_cmd=kustomize_cmd,
        projects=projects if projects is not None else projects_from_file(source_repos=[repo.url]),
        **argocd_options,
    )
    server = ArgoServer(argocd, checker, tls=tls).start()
    sim = Sim(repo, cluster, argocd, server, checker, api=None)  # type: ignore[arg-type]
    sim.api = sim.client()
    return sim


def stop_sim(sim: Sim) -> None:
    sim.api.close()
    sim.argocd.controller.resume()
    sim.server.stop()
    sim.cluster.close()
