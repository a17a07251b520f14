"""Canary releases on the local target, with real MLflow, Docker, the registry, git and kustomize:
the stable and canary Deployments' replicas share the endpoint's address, and the kernel spreads
connections over them (see ``tests/e2e/canary_flow.py`` for the flow and how the split is measured)."""

from __future__ import annotations

from tests.e2e.canary_flow import run_canary_releases


def test_canary_releases_on_the_local_target(make_e2e_client, tmp_path) -> None:
    client = make_e2e_client()
    run_canary_releases(client, tmp_path / "data" / "gitops.git", "iris-canary-local")
