"""Server-Sent Events parsing (the subset the control service emits, read the way the spec says)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data) if self.data else None


def parse_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Turn text lines (without their line endings) into events; comments and ``retry:`` are skipped."""
    event = "message"
    data: list[str] = []
    event_id: str | None = None
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield ServerSentEvent(event=event, data="\n".join(data), id=event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value
    if data:
        yield ServerSentEvent(event=event, data="\n".join(data), id=event_id)
