"""A strict reader of the SSE wire format, independent of the client package under test."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ALLOWED_FIELDS = {"id", "event", "data", "retry"}


@dataclass(frozen=True)
class WireEvent:
    event: str
    data: Any
    id: int | None


def read_stream(text: str) -> list[WireEvent]:
    """Split on blank lines; every line is a known field or a comment; each event has one JSON data line."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            assert name in ALLOWED_FIELDS, f"unexpected SSE line {line!r}"
            fields.setdefault(name, []).append(value)
        if "data" not in fields:
            continue
        assert len(fields["data"]) == 1 and len(fields["event"]) == 1, block
        event_id = fields.get("id", [None])[0]
        events.append(WireEvent(fields["event"][0], json.loads(fields["data"][0]), int(event_id) if event_id else None))
    return events


def stream_text(client, path: str, headers: dict[str, str] | None = None) -> tuple[str, Any]:
    with client.stream("GET", path, headers=headers or {}) as response:
        body = "".join(response.iter_text())
    return body, response
