"""Argo CD CRD openAPIV3Schema as a strict JSON Schema validator.

The API server prunes fields a structural schema does not declare instead of rejecting them, so a
typo in a shipped manifest would vanish silently on apply. Here undeclared fields are errors,
except under ``x-kubernetes-preserve-unknown-fields``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML

CRD_FILES = {
    "Application": "application-crd.yaml",
    "ApplicationSet": "applicationset-crd.yaml",
    "AppProject": "appproject-crd.yaml",
}


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items() if not key.startswith("x-kubernetes-")}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        strict.pop("type", None)
        strict["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return strict


@cache
def validator(contracts_dir: Path, kind: str) -> jsonschema.Validator:
    crd = YAML(typ="safe", pure=True).load((contracts_dir / "argocd" / CRD_FILES[kind]).read_text())
    (version,) = [version for version in crd["spec"]["versions"] if version["name"] == "v1alpha1"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(contracts_dir: Path, manifest: dict[str, Any]) -> list[str]:
    assert manifest.get("apiVersion") == "argoproj.io/v1alpha1", manifest.get("apiVersion")
    found = validator(contracts_dir, manifest["kind"]).iter_errors(manifest)
    return sorted(f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}" for error in found)
