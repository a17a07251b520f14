"""DeploymentSpec -> the files of one model's Kustomize overlay, and the shared base."""

from __future__ import annotations

from functools import lru_cache

from renderer import names
from renderer.spec import DeploymentSpec
from renderer.templating import parse_single_document, read_static, render_template

BASE_FILES = ("kustomization.yaml", "deployment.yaml", "service.yaml")


def render_base() -> dict[str, bytes]:
    """The shared base (``base/model-server/...``), identical bytes on every call."""
    return dict(_base_files())


@lru_cache(maxsize=1)
def _base_files() -> tuple[tuple[str, bytes], ...]:
    # Static package data: read and checked once per process.
    files = {f"{names.BASE_DIR}/{name}": read_static(f"base/{names.BASE_RESOURCE_NAME}/{name}") for name in BASE_FILES}
    for path, content in files.items():
        parse_single_document(path, content)
    return tuple(files.items())


def render_model(spec: DeploymentSpec) -> dict[str, bytes]:
    """Every file of the endpoint's overlay, keyed by path in the GitOps repo.

    The result is the complete content of ``model_dir(spec.namespace, spec.endpoint_name)``: a writer
    should remove files there that are not in it (an HPA that was switched off, for example).
    The shared base is not included; write ``render_base()`` beside it.
    """
    directory = names.model_dir(spec.namespace, spec.endpoint_name)
    optional: dict[str, str] = {}
    if spec.autoscaling is not None:
        optional["hpa.yaml"] = "overlay/hpa.yaml.j2"
    if spec.disruption_budget is not None:
        optional["pdb.yaml"] = "overlay/pdb.yaml.j2"

    common = {
        "spec": spec,
        "base_name": names.BASE_RESOURCE_NAME,
        "base_image_name": names.BASE_IMAGE_NAME,
        "container_name": names.CONTAINER_NAME,
    }
    files = {
        "kustomization.yaml": render_template(
            "overlay/kustomization.yaml.j2", base_dir=names.BASE_DIR, extra_resources=sorted(optional), **common
        ),
        # Sorted so that the same env gives the same bytes whatever order the request listed it in.
        "deployment-patch.yaml": render_template(
            "overlay/deployment-patch.yaml.j2",
            env=sorted(spec.env.items()),
            secret_env=sorted(spec.secret_env.items()),
            **common,
        ),
    }
    for file_name, template in optional.items():
        files[file_name] = render_template(template, **common)

    rendered = {f"{directory}/{name}": content for name, content in sorted(files.items())}
    for path, content in rendered.items():
        parse_single_document(path, content)
    return rendered
