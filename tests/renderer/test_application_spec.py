"""ApplicationSpec: defaults that keep UI rollback working, and refusal of unsafe values."""

from __future__ import annotations

import pytest

from renderer import (
    ApplicationSpec,
    RenderError,
    application_file,
    application_manifest,
    application_name,
    render_application,
)

BASE = {
    "name": "mlops-models--iris",
    "repo_url": "https://git.example.com/gitops.git",
    "path": "apps/mlops-models/iris",
    "destination_namespace": "mlops-models",
}


def test_defaults_are_manual_sync_in_argocd_namespace():
    app = ApplicationSpec(**BASE)
    manifest = application_manifest(app)
    assert manifest["metadata"] == {
        "name": "mlops-models--iris",
        "namespace": "argocd",
        "finalizers": ["resources-finalizer.argocd.argoproj.io"],
    }
    assert manifest["spec"]["syncPolicy"] == {"syncOptions": ["CreateNamespace=true"]}
    assert manifest["spec"]["project"] == "mlops-models"
    assert manifest["spec"]["source"]["targetRevision"] == "main"
    assert list(render_application(app)) == ["argocd-apps/mlops-models--iris.yaml"]


def test_automated_sync_carries_prune():
    manifest = application_manifest(ApplicationSpec(**BASE, automated_sync=True, prune=False))
    assert manifest["spec"]["syncPolicy"]["automated"] == {"prune": False, "selfHeal": True}


def test_names_and_files():
    assert application_name("production", "churn") == "production--churn"
    assert application_file("production--churn") == "argocd-apps/production--churn.yaml"
    with pytest.raises(ValueError):
        application_name("Production", "churn")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("path", "../other-team"),
        ("path", "/etc"),
        ("path", "apps/../../x"),
        ("path", ""),
        ("name", "x" * 64),
        ("name", "Iris"),
        ("namespace", "argo cd"),
        ("repo_url", "https://host/repo.git extra"),
        ("labels", {"bad key!": "v"}),
        ("labels", {"team": "not a label value"}),
        ("sync", True),
    ],
)
def test_unsafe_values_are_refused(field, value):
    with pytest.raises(RenderError) as caught:
        ApplicationSpec.validated(**{**BASE, field: value})
    assert caught.value.field.split(".")[0] == field
