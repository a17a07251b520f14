"""Argo CD adapter: REST client and the wait-until-synced loop."""

from control_api.adapters.argocd.client import ArgoCDClient
from control_api.adapters.argocd.errors import ArgoCDAuthFailed, ArgoCDOperationInProgress, ArgoCDRequestRejected
from control_api.adapters.argocd.wait import AppState, wait_for_sync

__all__ = [
    "AppState",
    "ArgoCDAuthFailed",
    "ArgoCDClient",
    "ArgoCDOperationInProgress",
    "ArgoCDRequestRejected",
    "wait_for_sync",
]
