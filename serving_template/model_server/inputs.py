"""Every request shape clients send today, turned into rows in the model's column order.

Shapes: {"inputs": {col: [..]}} (columns), {"inputs": [[..]]} (rows), {"inputs": [..]} (one row),
{"data": ...}, {"features": ...}, {"instances": [...]} (rows or records), MLflow's "dataframe_split"
and "dataframe_records". Problems raise ``InputError`` and become a 4xx, never a 500.
"""

from __future__ import annotations

import math
from typing import Any

from model_server.model import Column

ROW_KEYS = ("inputs", "data", "features", "instances")


class InputError(ValueError):
    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def extract_rows(body: Any, columns: list[Column], max_rows: int) -> tuple[list[list[Any]], list[str] | None]:
    """Return (rows, column names as sent or None) in the signature's column order."""
    if not isinstance(body, dict):
        raise InputError("invalid_body", 'the body must be a JSON object such as {"inputs": [[...]]}')
    names = [c.name for c in columns if c.name]
    if "dataframe_split" in body:
        split = body["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise InputError("invalid_body", 'dataframe_split needs {"columns": [...], "data": [[...]]}')
        given = split.get("columns")
        rows = split["data"]
        _check_rows(rows, max_rows)
        return (_reorder(rows, given, names) if given is not None else _check_width(rows, names)), names or given
    if "dataframe_records" in body:
        return _records(body["dataframe_records"], names, max_rows), names
    key = next((k for k in ROW_KEYS if k in body), None)
    if key is None:
        raise InputError(
            "invalid_body",
            "no input found: send one of inputs, data, features, instances, dataframe_split or dataframe_records",
            {"accepted_keys": [*ROW_KEYS, "dataframe_split", "dataframe_records"]},
        )
    value = body[key]
    if isinstance(value, dict):
        return _columns(value, names, max_rows), names
    if not isinstance(value, list) or not value:
        raise InputError("invalid_shape", f"{key} must be a non-empty list of rows, one row, or an object of columns")
    if all(isinstance(item, dict) for item in value):
        return _records(value, names, max_rows), names
    if all(not isinstance(item, (list, dict)) for item in value):
        return _check_width([value], names), names
    if all(isinstance(item, list) for item in value):
        _check_rows(value, max_rows)
        return _check_width(value, names), names
    raise InputError("invalid_shape", f"{key} mixes rows and single values")


def to_matrix(rows: list[list[Any]], columns: list[Column]):
    """A float64 matrix for the native fast path; wrong types are a 4xx."""
    import numpy as np

    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (isinstance(value, float) and not math.isfinite(value))
            ):
                if value is None and columns and c < len(columns) and not columns[c].required:
                    continue
                column = columns[c].name if columns and c < len(columns) else c
                raise InputError(
                    "invalid_type",
                    f"row {r}, column {column!r}: expected a number, got {type(value).__name__} {value!r}"[:300],
                    {
                        "row": r,
                        "column": column,
                        "expected": columns[c].type if columns and c < len(columns) else "number",
                    },
                )
    return np.asarray(rows, dtype=np.float64)


def _check_rows(rows: Any, max_rows: int) -> None:
    if not isinstance(rows, list) or not rows:
        raise InputError("invalid_shape", "expected a non-empty list of rows")
    if len(rows) > max_rows:
        raise InputError(
            "too_many_rows",
            f"{len(rows)} rows is more than {max_rows}; use POST /predict/batch",
            {"max_rows": max_rows},
        )
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise InputError("invalid_shape", f"row {i} is not a list")


def _check_width(rows: list[list[Any]], names: list[str]) -> list[list[Any]]:
    if names:
        for i, row in enumerate(rows):
            if len(row) != len(names):
                raise InputError(
                    "invalid_shape",
                    f"row {i} has {len(row)} values; the model expects {len(names)}: {', '.join(names)}",
                    {"expected_columns": names},
                )
    return rows


def _reorder(rows: list[list[Any]], given: Any, names: list[str]) -> list[list[Any]]:
    if not isinstance(given, list):
        raise InputError("invalid_body", "dataframe_split.columns must be a list of column names")
    if not names:
        return rows
    _check_columns("columns", names, given)
    for i, row in enumerate(rows):
        if len(row) != len(given):
            raise InputError("invalid_shape", f"row {i} has {len(row)} values for {len(given)} columns")
    if given == names:
        return rows
    order = [given.index(n) for n in names]
    return [[row[j] for j in order] for row in rows]


def _records(records: Any, names: list[str], max_rows: int) -> list[list[Any]]:
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise InputError("invalid_shape", "records must be a non-empty list of objects")
    if len(records) > max_rows:
        raise InputError(
            "too_many_rows",
            f"{len(records)} rows is more than {max_rows}; use POST /predict/batch",
            {"max_rows": max_rows},
        )
    if not names:
        names = list(records[0])
    rows = []
    for i, record in enumerate(records):
        _check_columns(f"record {i}", names, list(record))
        rows.append([record[n] for n in names])
    return rows


def _columns(columns: dict, names: list[str], max_rows: int) -> list[list[Any]]:
    if not names:
        names = list(columns)
    _check_columns("columns", names, list(columns))
    values = [columns[n] if isinstance(columns[n], list) else [columns[n]] for n in names]
    lengths = {len(v) for v in values}
    if len(lengths) != 1:
        raise InputError(
            "invalid_shape",
            "every column must hold the same number of values",
            {"lengths": {n: len(v) for n, v in zip(names, values, strict=True)}},
        )
    count = lengths.pop()
    if count == 0 or count > max_rows:
        raise InputError(
            "invalid_shape" if count == 0 else "too_many_rows", f"{count} rows is not between 1 and {max_rows}"
        )
    return [list(row) for row in zip(*values, strict=True)]


def _check_columns(what: str, expected: list[str], given: list[str]) -> None:
    missing = [n for n in expected if n not in given]
    unknown = [g for g in given if g not in expected]
    if missing or unknown:
        raise InputError(
            "invalid_columns",
            f"{what} {'does' if what.startswith('record') else 'do'} not match the model's signature "
            f"(missing: {missing or 'none'}; unexpected: {unknown or 'none'})",
            {"expected_columns": expected, "missing": missing, "unexpected": unknown},
        )
