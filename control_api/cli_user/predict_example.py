"""A ready-to-paste curl for a served model: its input example when /metadata has one, else a generic body."""

from __future__ import annotations

import json
import shlex
from typing import Any

GENERIC_BODY: dict[str, Any] = {"dataframe_split": {"columns": ["feature_1", "feature_2"], "data": [[0.0, 0.0]]}}
SCORING_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PLACEHOLDER_BY_TYPE = {
    "double": 0.0,
    "float": 0.0,
    "long": 0,
    "integer": 0,
    "boolean": False,
    "string": "",
    "binary": "",
    "datetime": "1970-01-01T00:00:00",
}


def _from_example(example: Any) -> dict[str, Any] | None:
    if isinstance(example, str):
        try:
            example = json.loads(example)
        except ValueError:
            return None
    if isinstance(example, dict):
        if any(key in example for key in SCORING_KEYS):
            return {key: example[key] for key in SCORING_KEYS if key in example}
        if isinstance(example.get("columns"), list) and isinstance(example.get("data"), list):
            return {"dataframe_split": {"columns": example["columns"], "data": example["data"]}}
        if example and all(isinstance(v, list) for v in example.values()):
            columns = list(example)
            # Columns of unequal length give as many rows as the shortest has values.
            rows = [list(row) for row in zip(*example.values(), strict=False)]
            return {"dataframe_split": {"columns": columns, "data": rows}} if rows else None
    if isinstance(example, list) and example and all(isinstance(row, dict) for row in example):
        return {"dataframe_records": example}
    return None


def _from_signature(signature: Any) -> dict[str, Any] | None:
    if not isinstance(signature, dict):
        return None
    inputs = signature.get("inputs")
    if isinstance(inputs, str):  # MLflow stores the schema as a JSON string
        try:
            inputs = json.loads(inputs)
        except ValueError:
            return None
    if (
        not isinstance(inputs, list)
        or not inputs
        or not all(isinstance(col, dict) and col.get("name") for col in inputs)
    ):
        return None
    columns = [col["name"] for col in inputs]
    row = [PLACEHOLDER_BY_TYPE.get(str(col.get("type", "double")), 0.0) for col in inputs]
    return {"dataframe_split": {"columns": columns, "data": [row]}}


def example_body(metadata: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """(body, came_from_the_model). Looks at the top level and under ``model`` of the metadata."""
    places: list[dict[str, Any]] = []
    if isinstance(metadata, dict):
        places.append(metadata)
        if isinstance(metadata.get("model"), dict):
            places.append(metadata["model"])
    for place in places:
        body = _from_example(place.get("input_example"))
        if body:
            return body, True
    for place in places:
        body = _from_signature(place.get("signature"))
        if body:
            return body, True
    return GENERIC_BODY, False


def curl_command(url: str, body: dict[str, Any]) -> str:
    payload = json.dumps(body, separators=(",", ":"))
    return f"curl -sS -X POST {shlex.quote(url)} -H 'Content-Type: application/json' -d {shlex.quote(payload)}"
