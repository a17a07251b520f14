"""Kubernetes adapter: read-only access to Services, Deployments, Pods and Events."""

from control_api.adapters.kubernetes.services import (
    KubernetesAuthFailed,
    KubernetesReader,
    KubernetesRequestRejected,
    api_client_from_settings,
    wait_for_external_address,
)

__all__ = [
    "KubernetesAuthFailed",
    "KubernetesReader",
    "KubernetesRequestRejected",
    "api_client_from_settings",
    "wait_for_external_address",
]
