"""An Argo CD Application and the model objects it deploys, in a GitOps repo the test commits to."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from ruamel.yaml import YAML

APP_NAME = "iris"
NAMESPACE = "mlops-models"
APP_PATH = "apps/iris"


def _yaml(document: dict) -> str:
    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(document, stream)
    return stream.getvalue()


def model_objects(name: str, image: str, service_type: str = "LoadBalancer") -> dict[str, dict]:
    labels = {"app.kubernetes.io/name": name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [{"name": "MODEL_NAME", "value": name}],
                            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
                        }
                    ]
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": service_type, "selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": ["deployment.yaml", "service.yaml"],
    }
    return {"deployment.yaml": deployment, "service.yaml": service, "kustomization.yaml": kustomization}


class GitOpsRepo:
    """A bare repo (what Argo CD reads) and a working clone the test commits into."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "gitops.git"
        self.work = root / "gitops-work"
        self._git("init", "--bare", "--quiet", "--initial-branch=main", str(self.bare), cwd=root)
        self._git("clone", "--quiet", str(self.bare), str(self.work), cwd=root)

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit_files(self, folder: str, files: dict[str, dict], message: str) -> str:
        target = self.work / folder
        target.mkdir(parents=True, exist_ok=True)
        for existing in target.glob("*.yaml"):
            if existing.name not in files:
                existing.unlink()
        for filename, document in files.items():
            (target / filename).write_text(_yaml(document))
        self._git("add", "-A", folder)
        self._git("-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "--quiet", "-m", message)
        self._git("push", "--quiet", "origin", "HEAD:main")
        return self._git("rev-parse", "HEAD").strip()

    def commit_model(self, image: str, **kwargs) -> str:
        return self.commit_files(APP_PATH, model_objects(APP_NAME, image, **kwargs), f"deploy {image}")

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(["git", *args], cwd=cwd or self.work, check=True, capture_output=True, text=True).stdout


def application_manifest(repo_url: str, *, automated: bool = False) -> dict:
    spec = {
        "project": "mlops-models",
        "source": {"repoURL": repo_url, "path": APP_PATH, "targetRevision": "main"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": NAMESPACE},
    }
    if automated:
        spec["syncPolicy"] = {"automated": {"prune": True, "selfHeal": True}}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": APP_NAME, "namespace": "argocd", "labels": {"mlops/model": APP_NAME}},
        "spec": spec,
    }
