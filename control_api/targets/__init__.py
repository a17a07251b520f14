"""Deployment targets: where the committed manifests become running model servers.

``local``: this machine's Docker Engine, realised from a real ``kustomize build`` of the commit.
``argocd``: a cluster, through the Argo CD API (sync to the commit) and the Kubernetes API (the
Service's external address). Both end with the model's own ``/health`` answering.
"""

from control_api.targets.base import AppRef, DeploymentTarget, NotReady, Ready


def make_target(services) -> "DeploymentTarget":
    kind = services.settings.target.kind
    if kind == "argocd":
        from control_api.targets.argocd import ArgoCDTarget

        return ArgoCDTarget(services)
    from control_api.targets.local import LocalTarget

    return LocalTarget(services)


__all__ = ["AppRef", "DeploymentTarget", "NotReady", "Ready", "make_target"]
