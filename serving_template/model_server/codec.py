"""JSON encoding and decoding for the request path: orjson when the image has it, the standard library
otherwise; and the JSON response both the app and its V2 routes answer with."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import Response

loads: Callable[[bytes | str], Any]

try:  # faster when the image has it; plain json otherwise
    import orjson

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)

    loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the image

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    loads = json.loads


def json_response(status: int, payload: Any) -> Response:
    return Response(dumps(payload), status_code=status, media_type="application/json")
