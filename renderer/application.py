"""ApplicationSpec -> the Argo CD Application of one model, as a GitOps file and as an API body."""

from __future__ import annotations

import posixpath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from renderer import names
from renderer.errors import RenderError
from renderer.templating import parse_single_document, render_template


class ApplicationSpec(BaseModel):
    """One Argo CD Application pointing at one model's overlay.

    ``automated_sync`` defaults to False: the control service triggers each sync itself, and Argo
    CD only offers rollback from its UI for Applications without automated sync. ``prune`` goes
    into the automated policy when that is on; with manual sync the API client passes it in its
    sync request.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    namespace: str = "argocd"
    project: str = "mlops-models"
    repo_url: str
    path: str
    target_revision: str = "main"
    destination_server: str = "https://kubernetes.default.svc"
    destination_namespace: str
    automated_sync: bool = False
    prune: bool = True
    labels: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def validated(cls, **fields: Any) -> ApplicationSpec:
        try:
            return cls(**fields)
        except ValidationError as error:
            raise RenderError.from_validation_error(error) from None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # Argo CD copies the name into a label on managed resources (label tracking), so keep
        # it within the 63 characters of a label value.
        return names.check_dns_label(value, "Application name")

    @field_validator("namespace", "destination_namespace")
    @classmethod
    def _namespace(cls, value: str, info: Any) -> str:
        return names.check_dns_label(value, info.field_name)

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return names.check_dns_subdomain(value, "project")

    @field_validator("repo_url", "target_revision", "destination_server")
    @classmethod
    def _one_word(cls, value: str, info: Any) -> str:
        if not value or len(value) > 2048 or any(char.isspace() or not char.isprintable() for char in value):
            raise ValueError(f"{info.field_name} must be non-empty printable text without spaces")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        normalised = posixpath.normpath(value) if value else ""
        if (
            not value
            or value.startswith("/")
            or normalised != value.rstrip("/")
            or normalised == ".."
            or normalised.startswith("../")
            or any(char.isspace() or not char.isprintable() for char in value)
        ):
            raise ValueError(f"path {value!r} must be a normalised relative path inside the repository")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            names.check_label_key(key)
            names.check_label_value(value, f"label {key}")
        return labels


def _render(app: ApplicationSpec) -> bytes:
    return render_template("argocd/application.yaml.j2", app=app, labels=sorted(app.labels.items()))


def render_application(app: ApplicationSpec) -> dict[str, bytes]:
    """The Application manifest as a file of the GitOps repo (``argocd-apps/<name>.yaml``)."""
    path = names.application_file(app.name)
    content = _render(app)
    parse_single_document(path, content)
    return {path: content}


def application_manifest(app: ApplicationSpec) -> dict[str, Any]:
    """The same Application as a plain dict, for the Argo CD API (parsed from the very same bytes)."""
    path = names.application_file(app.name)
    manifest = parse_single_document(path, _render(app))
    assert isinstance(manifest, dict)
    return manifest
