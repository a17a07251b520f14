"""API errors as Argo CD's gRPC gateway answers them.

The gateway maps a gRPC status to HTTP (grpc-gateway's HTTPStatusFromCode) and writes the body as
``runtimeError`` in swagger.json: ``{"error": msg, "code": grpc_code, "message": msg}``.
"""

from __future__ import annotations

# gRPC code -> HTTP status (grpc-gateway runtime.HTTPStatusFromCode).
GRPC_TO_HTTP = {
    "InvalidArgument": (3, 400),
    "NotFound": (5, 404),
    "AlreadyExists": (6, 409),
    "PermissionDenied": (7, 403),
    "FailedPrecondition": (9, 400),
    "Internal": (13, 500),
    "Unavailable": (14, 503),
    "Unauthenticated": (16, 401),
    "Unknown": (2, 500),
}


class ArgoError(Exception):
    def __init__(self, grpc_code: str, message: str) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code
        self.message = message

    @property
    def http_status(self) -> int:
        return GRPC_TO_HTTP[self.grpc_code][1]

    def body(self) -> dict:
        return {"error": self.message, "code": GRPC_TO_HTTP[self.grpc_code][0], "message": self.message}


def permission_denied() -> ArgoError:
    """server/application: argocommon.PermissionDeniedAPIError."""
    return ArgoError("PermissionDenied", "permission denied")


def app_not_found(name: str) -> ArgoError:
    """apierrors.NewNotFound(applications.argoproj.io, name) wrapped in codes.NotFound."""
    return ArgoError("NotFound", f'applications.argoproj.io "{name}" not found')
