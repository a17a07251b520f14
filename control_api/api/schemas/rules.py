"""Field rules shared by request bodies and path parameters, each refusal named by its rule.

Validation errors carry a rule name (``PydanticCustomError`` type) so a client sees which field broke
which rule, for example ``{"field": "model_name", "rule": "dns1123_label"}``. What the manifests are
made of is checked by the renderer's own rules (renderer.names, renderer.spec); the limits here are the
API's policy on top.
"""

from __future__ import annotations

from pydantic.json_schema import JsonDict
from pydantic_core import PydanticCustomError

from renderer import names as render_names
from renderer.spec import RESERVED_ENV, check_env_key

# What dns1123_label accepts, stated in the OpenAPI document (json_schema_extra: documented only, so
# a refusal still names the rule that broke, e.g. dns1035_label).
LABEL_DOC: JsonDict = {"pattern": r"^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}


def dns1123_label(value: str, what: str) -> str:
    if value[:1].isdigit():
        raise PydanticCustomError(
            "dns1035_label", "{what} must start with a letter (it names a Kubernetes Service)", {"what": what}
        )
    if len(value) > 63:
        raise PydanticCustomError(
            "max_length_63", "{what} must be at most 63 characters (got {n})", {"what": what, "n": len(value)}
        )
    try:
        render_names.check_dns_label(value, what)
    except ValueError as error:
        raise PydanticCustomError("dns1123_label", "{why}", {"why": str(error)}) from None
    return value


def env_key(key: str) -> None:
    if len(key) > 128:
        raise PydanticCustomError(
            "env_key", "environment variable name {key!r} is longer than 128 characters", {"key": key[:40]}
        )
    try:
        check_env_key(key)
    except ValueError as error:
        raise PydanticCustomError("env_key", "{why}", {"why": str(error)}) from None
    if key in RESERVED_ENV:
        raise PydanticCustomError("env_reserved", "{key} is set by the platform and cannot be overridden", {"key": key})
