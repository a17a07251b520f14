"""The Argo CD half of the simulator: API server rules, application controller, repo server,
projects and RBAC, gitops-engine health, TLS, and the server runner."""

from tests.simulator.argocd.argocd import DEFAULT_TOKEN, ArgoCD
from tests.simulator.argocd.errors import ArgoError
from tests.simulator.argocd.faults import ArgoFaults
from tests.simulator.argocd.projects import DEFAULT_PROJECT_FILE, projects_from_file
from tests.simulator.argocd.server import ArgoServer

__all__ = [
    "DEFAULT_PROJECT_FILE",
    "DEFAULT_TOKEN",
    "ArgoCD",
    "ArgoError",
    "ArgoFaults",
    "ArgoServer",
    "projects_from_file",
]
