"""Fixtures for renderer tests: a real `kubectl kustomize` build of rendered files."""

from __future__ import annotations

import subprocess
from typing import Any, Callable

import pytest
from render_helpers import load_documents, write_tree

from renderer import DeploymentSpec, render_base, render_model


@pytest.fixture
def build_model(tmp_path, kustomize_cmd) -> Callable[[DeploymentSpec], list[dict[str, Any]]]:
    """Render base + overlay into a fresh tree, `kubectl kustomize` the overlay, parse the output."""

    def build(spec: DeploymentSpec) -> list[dict[str, Any]]:
        root = tmp_path / f"repo-{spec.namespace}-{spec.model_name}-{len(list(tmp_path.iterdir()))}"
        files = {**render_base(), **render_model(spec)}
        write_tree(root, files)
        overlay = root / "apps" / spec.namespace / spec.model_name
        result = subprocess.run([*kustomize_cmd, str(overlay)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"kustomize build failed:\n{result.stderr}"
        return load_documents(result.stdout)

    return build

