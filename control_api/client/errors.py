"""What can go wrong talking to the control API, in terms a caller can act on."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of the client's errors."""


class ServerUnreachable(ClientError):
    """No HTTP answer at all: refused, DNS, TLS or timeout."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"cannot reach the control service at {server}: {reason}")
        self.server = server
        self.reason = reason


class ApiError(ClientError):
    """The service answered with an error status; fields come from its standard error body."""

    def __init__(
        self, status: int, code: str, message: str, request_id: str = "", details: Any = None, body: Any = None
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details
        self.body = body

    @property
    def is_client_error(self) -> bool:
        return 400 <= self.status < 500

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "request_id": self.request_id,
        }
