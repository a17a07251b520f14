"""The Argo CD Application of a model, as committed to the GitOps repo and upserted by the ``argocd`` target.

Every deploy commits it (whatever the target), so that the repo alone can bootstrap a cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_api.redaction import url_without_credentials
from control_api.settings import Settings
from control_api.targets.base import AppRef

if TYPE_CHECKING:
    from renderer import ApplicationSpec


def application_spec(settings: Settings, app: AppRef) -> ApplicationSpec:
    from renderer import ApplicationSpec

    argo = settings.argocd
    return ApplicationSpec.validated(
        name=app.application,
        namespace=argo.namespace,
        project=argo.project,
        # Committed to git and readable in Argo CD: never the credentials a remote URL may carry.
        repo_url=url_without_credentials(argo.repo_url or settings.git_remote_url()),
        path=app.path,
        target_revision=settings.git.branch,
        destination_server=argo.destination_server,
        destination_namespace=app.namespace,
        automated_sync=argo.automated_sync,
        labels=_labels(app),
    )


def _labels(app: AppRef) -> dict[str, str]:
    """The Application's labels. A named endpoint's also name its model, so the Argo CD UI can show
    every endpoint of a model with one label filter; the default endpoint's stay as they were."""
    labels = {"app.kubernetes.io/managed-by": "mlops-control"}
    if app.named_endpoint:
        labels["mlops.io/model-name"] = app.model_name
    return labels


def application_manifest(settings: Settings, app: AppRef) -> dict:
    from renderer import application_manifest as render_manifest

    return render_manifest(application_spec(settings, app))


def application_files(settings: Settings, app: AppRef) -> dict[str, bytes]:
    """The Application's file in the GitOps repo (path -> bytes)."""
    from renderer import render_application

    return render_application(application_spec(settings, app))
