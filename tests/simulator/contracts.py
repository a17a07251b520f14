"""Contract checks for everything the simulator receives and sends.

Argo CD shapes come from the published swagger (OpenAPI 2.0, JSON-Schema draft 4 plus ``$ref`` into
``#/definitions``) and from the Application CRD's openAPIV3Schema; Kubernetes shapes from the schemas
shipped in ``kubernetes-validate``. Request bodies are checked strictly: the swagger never says
``additionalProperties: false``, but a field the server does not know (a typo such as ``revison``)
would be silently dropped by Argo CD, so the simulator treats it as a violation.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from ruamel.yaml import YAML

KUBERNETES_VERSION = "1.32"


@dataclass(frozen=True)
class Violation:
    where: str  # e.g. "request POST /api/v1/applications/x/sync"
    schema: str  # definition name or Kubernetes kind
    message: str


class ContractViolation(Exception):
    def __init__(self, violation: Violation) -> None:
        super().__init__(f"{violation.where}: {violation.schema}: {violation.message}")
        self.violation = violation


def _forbid_unknown_properties(schema: Any) -> Any:
    """Copy of a schema where every object with declared properties rejects undeclared ones."""
    if isinstance(schema, list):
        return [_forbid_unknown_properties(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _forbid_unknown_properties(value) for key, value in schema.items()}
    # allOf composes properties from several schemas; closing one part would reject the others' fields.
    if "properties" in schema and "additionalProperties" not in schema and "allOf" not in schema:
        strict["additionalProperties"] = False
    return strict


class SwaggerValidator:
    def __init__(self, swagger_path: Path) -> None:
        swagger = json.loads(Path(swagger_path).read_text())
        self.definitions: dict[str, Any] = swagger["definitions"]
        self.paths: dict[str, Any] = swagger["paths"]
        self._lenient = {"definitions": self.definitions}
        strict_definitions = _forbid_unknown_properties(self.definitions)
        # v1alpha1ResourceNode's fields live partly in an allOf target; leave that target open too.
        strict_definitions["v1alpha1ResourceRef"] = self.definitions["v1alpha1ResourceRef"]
        # The Go type embeds metav1.TypeMeta inline, which the generated swagger leaves out; Argo CD
        # accepts apiVersion/kind (the CLI sends whole manifests), so they are not unknown fields.
        type_meta = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}
        strict_definitions["v1alpha1Application"]["properties"].update(type_meta)
        self._strict = {"definitions": strict_definitions}

    def errors(self, definition: str, instance: Any, *, strict: bool = False) -> list[str]:
        if definition not in self.definitions:
            raise KeyError(f"swagger has no definition {definition!r}")
        root = dict(self._strict if strict else self._lenient)
        root["$ref"] = f"#/definitions/{definition}"
        validator = jsonschema.Draft4Validator(root)
        return [
            f"{'/'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
            for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
        ]

    def operation_schema(self, path: str, method: str, *, response: bool) -> str:
        """Definition name of an operation's body (request) or 200 answer, read from the swagger paths."""
        operation = self.paths[path][method.lower()]
        if response:
            ref = operation["responses"]["200"]["schema"]["$ref"]
        else:
            ref = next(p["schema"]["$ref"] for p in operation.get("parameters", []) if p.get("in") == "body")
        return ref.rsplit("/", 1)[-1]


class CrdValidator:
    def __init__(self, crd_path: Path) -> None:
        crd = YAML(typ="safe").load(Path(crd_path).read_text())
        self.kind = crd["spec"]["names"]["kind"]
        version = next(v for v in crd["spec"]["versions"] if v.get("storage", True))
        self._validator = jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])

    def errors(self, instance: Any) -> list[str]:
        return [
            f"{'/'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
            for error in self._validator.iter_errors(instance)
        ]


@functools.cache
def _kubernetes_validator(kind: str, api_version: str) -> jsonschema.Validator:
    """The validator ``kubernetes_validate.validate`` builds, built once (it re-reads 1.3 MB per call)."""
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    version = kubernetes_validate.utils.all_versions()
    version = [v for v in version if kubernetes_validate.utils.major_minor(v) <= KUBERNETES_VERSION][-1]
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError as exc:
        raise kubernetes_validate.SchemaNotFoundError(kind=kind, version=version, api_version=api_version) from exc
    definitions = schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def kubernetes_errors(obj: dict) -> list[str]:
    try:
        validator = _kubernetes_validator(obj.get("kind", ""), obj.get("apiVersion", ""))
    except kubernetes_validate.SchemaNotFoundError as error:
        return [error.message]
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is None:
        return []
    return [f"{'/'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"]


# Parsing the contracts takes seconds; every simulator in a test session shares one parsed copy.
_swagger_validator = functools.lru_cache(maxsize=None)(SwaggerValidator)
_crd_validator = functools.lru_cache(maxsize=None)(CrdValidator)


class ContractChecker:
    """Checks and records: every violation is kept so a test can assert none happened."""

    def __init__(self, contracts_dir: Path) -> None:
        argocd = Path(contracts_dir).resolve() / "argocd"
        self.swagger = _swagger_validator(argocd / "swagger.json")
        self.application_crd = _crd_validator(argocd / "application-crd.yaml")
        self.violations: list[Violation] = []

    def _record(self, where: str, schema: str, errors: list[str]) -> None:
        if errors:
            violation = Violation(where=where, schema=schema, message="; ".join(errors[:5]))
            self.violations.append(violation)
            raise ContractViolation(violation)

    def argocd(self, where: str, definition: str, body: Any, *, request: bool) -> None:
        self._record(where, definition, self.swagger.errors(definition, body, strict=request))
        if definition == "v1alpha1Application":
            self._record(where, "Application CRD", self.application_crd.errors(body))

    def kubernetes(self, where: str, obj: dict) -> None:
        self._record(where, obj.get("kind", "?"), kubernetes_errors(obj))
