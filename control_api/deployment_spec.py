"""A deploy request as the renderer's DeploymentSpec: one mapping for the API's check and the commit step.

The API builds the spec with placeholders for what only the pipeline learns (version, image digest,
run id), so every rule the renderer applies to what the client sent is checked before anything is
created, by the renderer's own code.
"""

from __future__ import annotations

from typing import Any

from control_api.errors import InvalidRequestError

# What only the pipeline knows, in shapes the renderer accepts: a placeholder breaks no rule.
PLACEHOLDER_VERSION = "1"
PLACEHOLDER_IMAGE = "registry.invalid/mlops/placeholder@sha256:" + "0" * 64
PLACEHOLDER_ID = "0" * 32

# The renderer's field names -> where the client wrote them.
REQUEST_FIELDS = {
    "model_name": "model_name",
    "namespace": "namespace",
    "endpoint": "endpoint_name",
    "env": "environment_vars",
    "secret_env": "secret_env",
    "replicas": "deployment_config.replicas",
    "cpu_limit": "deployment_config.cpu_limit",
    "memory_limit": "deployment_config.memory_limit",
    "cpu_request": "deployment_config.cpu_limit",
    "memory_request": "deployment_config.memory_limit",
    "autoscaling": "deployment_config.autoscaling",
}


def spec_fields(
    request: dict[str, Any],
    namespace: str,
    *,
    model_version: str,
    image: str,
    run_id: str,
    model_uri: str,
    deployment_id: str,
) -> dict[str, Any]:
    """The DeploymentSpec fields of a journalled deploy request (``DeployRequest.to_journal``); nested
    values stay plain data, so the spec validates them too."""
    config = request.get("deployment_config") or {}
    fields: dict[str, Any] = dict(
        model_name=request["model_name"],
        namespace=namespace,
        endpoint=request.get("endpoint_name"),
        model_version=model_version,
        image=image,
        run_id=run_id,
        model_uri=model_uri,
        deployment_id=deployment_id,
        replicas=config.get("replicas") or 1,
        env=request.get("environment_vars") or {},
        secret_env={key: dict(ref) for key, ref in (request.get("secret_env") or {}).items()},
    )
    for key in ("cpu_limit", "memory_limit"):
        if config.get(key):
            fields[key] = config[key]
    autoscaling = config.get("autoscaling")
    if autoscaling:
        fields["autoscaling"] = {
            "min_replicas": autoscaling["min_replicas"],
            "max_replicas": autoscaling["max_replicas"],
            "cpu_target_percent": autoscaling["target_cpu_utilization"],
        }
    return fields


def request_field(spec_field: str) -> str:
    """Where the client wrote the value that the renderer's ``spec_field`` (dotted) comes from."""
    if not spec_field:  # a rule across fields (the spec's own consistency checks)
        return "request"
    head, _, rest = spec_field.partition(".")
    if head == "autoscaling" and rest:
        rest = {"cpu_target_percent": "target_cpu_utilization"}.get(rest, rest)
    mapped = REQUEST_FIELDS.get(head, head)
    return f"{mapped}.{rest}" if rest else mapped


def check_renders(request: dict[str, Any], namespace: str) -> None:
    """Refuse (422, changing nothing) a journalled deploy request whose manifests could not render."""
    from renderer import DeploymentSpec, RenderError

    fields = spec_fields(
        request,
        namespace,
        model_version=PLACEHOLDER_VERSION,
        image=PLACEHOLDER_IMAGE,
        run_id=PLACEHOLDER_ID,
        model_uri=f"models:/{request['model_name']}/{PLACEHOLDER_VERSION}",
        deployment_id=PLACEHOLDER_ID,
    )
    try:
        DeploymentSpec.validated(**fields)
    except RenderError as exc:
        field = request_field(exc.field)
        raise InvalidRequestError(
            f"invalid request: {field}: {exc.message}",
            code="validation_error",
            details=[{"field": field, "rule": "renderable", "message": exc.message}],
        ) from exc
