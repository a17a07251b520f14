"""Deployment targets: where the committed manifests become running model servers.

``local``: this machine's Docker Engine, realised from a real ``kustomize build`` of the commit.
``argocd``: a cluster, through the Argo CD API (sync to the commit) and the Kubernetes API (the
Service's external address). Both end with the model's own ``/health`` answering. Which kind runs is
chosen in ``control_api.stack.targets``.
"""

from control_api.targets.base import AppRef, DeploymentTarget, NotReady, Ready, app_ref

__all__ = ["AppRef", "DeploymentTarget", "NotReady", "Ready", "app_ref"]
