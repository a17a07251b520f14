"""Start-up rule of the training backends: a Kubernetes Job cannot reach the control service's
embedded MLflow store, so the ``kubernetes`` backend needs a remote MLflow tracking server."""

from __future__ import annotations

from urllib.parse import urlparse

from control_api.settings import Settings

REMOTE_SCHEMES = frozenset({"http", "https"})


def validate_training_backend(settings: Settings) -> list[str]:
    """Problems that make the configured training backend unusable (empty when it is fine)."""
    if settings.training.backend != "kubernetes":
        return []
    problems: list[str] = []
    tracking_uri = settings.mlflow.tracking_uri
    if not tracking_uri:
        problems.append(
            "MLOPS_TRAINING__BACKEND=kubernetes cannot use the embedded SQLite MLflow store: training pods cannot "
            "reach it. Run an MLflow tracking server (mlflow server ...) and set MLOPS_MLFLOW__TRACKING_URI to its "
            "http(s):// URL."
        )
    elif urlparse(tracking_uri).scheme not in REMOTE_SCHEMES:
        problems.append(
            f"MLOPS_TRAINING__BACKEND=kubernetes needs a remote MLflow tracking server, but "
            f"MLOPS_MLFLOW__TRACKING_URI is {tracking_uri!r} (a local store the training pods cannot reach). "
            "Set it to the http(s):// URL of an MLflow tracking server."
        )
    return problems
