"""Sample specs and helpers shared by the renderer tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from renderer import Autoscaling, DeploymentSpec, DisruptionBudget, SecretRef

DIGEST_V1 = "sha256:" + "1" * 64
DIGEST_V2 = "sha256:" + "2a" * 32
KUBERNETES_VERSION = "1.30"


def spec_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model_name": "iris",
        "namespace": "mlops-models",
        "model_version": "3",
        "image": f"127.0.0.1:5000/mlops/iris@{DIGEST_V1}",
        "run_id": "0f3c2a9d8e7b4c6a9d8e7b4c6a9d8e7b",
        "model_uri": "models:/iris/3",
        "deployment_id": "dep-0001",
    }
    fields.update(overrides)
    return fields


def minimal_spec(**overrides: Any) -> DeploymentSpec:
    return DeploymentSpec(**spec_fields(**overrides))


def full_spec(**overrides: Any) -> DeploymentSpec:
    fields = spec_fields(
        model_name="churn",
        namespace="production",
        model_version="12",
        image=f"registry.example.com:443/team/churn-model@{DIGEST_V2}",
        run_id="5e1b0c7d2a9f4e3b8c6d1a0f9e8b7c6d",
        model_uri="models:/churn/12",
        deployment_id="7d9e2c3a-1b4f-4e8a-9c0d-2f6b5a4e3d21",
        cpu_limit="2",
        memory_limit="3Gi",
        cpu_request="750m",
        env={"LOG_LEVEL": "info", "BATCH_SIZE": "32", "GREETING": 'say "hi": #1 & {all} [of] *them*'},
        secret_env={"DB_PASSWORD": SecretRef(name="churn-db", key="password")},
        container_port=9000,
        autoscaling=Autoscaling(min_replicas=2, max_replicas=6, cpu_target_percent=70),
        disruption_budget=DisruptionBudget(min_available=1),
    )
    fields.update(overrides)
    return DeploymentSpec(**fields)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def load_documents(text: str) -> list[dict[str, Any]]:
    return [document for document in YAML(typ="safe", pure=True).load_all(text) if document is not None]


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [document["kind"] for document in documents]
    assert len(kinds) == len(set(kinds)), f"duplicate kinds in build output: {kinds}"
    return {document["kind"]: document for document in documents}
