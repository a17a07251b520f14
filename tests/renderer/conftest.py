"""Fixtures for renderer tests: a real `kubectl kustomize` build of rendered files."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from render_helpers import load_documents, write_tree
from ruamel.yaml import YAML

from renderer import DeploymentSpec, model_dir, render_base, render_model

_tree_numbers = itertools.count()


@pytest.fixture
def build_models(
    tmp_path, kustomize_cmd
) -> Callable[[list[DeploymentSpec]], dict[tuple[str, str], list[dict[str, Any]]]]:
    """Render many models into one tree and build them with ONE kustomize run (it is the slow part).

    Returns the built objects grouped by (namespace, name).
    """

    def build(specs: list[DeploymentSpec]) -> dict[tuple[str, str], list[dict[str, Any]]]:
        root = tmp_path / f"repo-{next(_tree_numbers)}"
        files = dict(render_base())
        for spec in specs:
            files.update(render_model(spec))
        write_tree(root, files)
        aggregate = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [model_dir(spec.namespace, spec.endpoint_name) for spec in specs],
        }
        with open(root / "kustomization.yaml", "w") as handle:
            YAML(typ="safe", pure=True).dump(aggregate, handle)
        result = subprocess.run([*kustomize_cmd, str(root)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"kustomize build failed:\n{result.stderr}"
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for document in load_documents(result.stdout):
            key = (document["metadata"].get("namespace", ""), document["metadata"]["name"])
            grouped.setdefault(key, []).append(document)
        return grouped

    return build


@pytest.fixture
def build_model(build_models) -> Callable[[DeploymentSpec], list[dict[str, Any]]]:
    """Build one model's overlay; returns its objects."""

    def build(spec: DeploymentSpec) -> list[dict[str, Any]]:
        grouped = build_models([spec])
        assert list(grouped) == [(spec.namespace, spec.endpoint_name)], f"unexpected objects: {list(grouped)}"
        return grouped[(spec.namespace, spec.endpoint_name)]

    return build
