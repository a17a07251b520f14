"""A small HTTP client of the control API (used by the ``mlops`` command line, usable from Python)."""

from control_api.client.errors import ApiError, ClientError, ServerUnreachable
from control_api.client.http import MlopsClient
from control_api.client.sse import ServerSentEvent, parse_sse

__all__ = ["ApiError", "ClientError", "MlopsClient", "ServerSentEvent", "ServerUnreachable", "parse_sse"]
