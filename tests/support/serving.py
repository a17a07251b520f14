"""Model-server test helpers: the server imported as in its image, and every request shape it accepts."""

from __future__ import annotations

import sys
from pathlib import Path

from fastapi.testclient import TestClient

from tests.support.iris import COLUMNS
from tests.support.paths import REPO_ROOT

SERVING_TEMPLATE = REPO_ROOT / "serving_template"
# Inside the image the server is the top-level package ``model_server``; import it the same way here.
if str(SERVING_TEMPLATE) not in sys.path:
    sys.path.insert(0, str(SERVING_TEMPLATE))


def make_client(model_dir: Path) -> TestClient:
    from model_server.app import create_app

    return TestClient(create_app(model_dir, load_in_background=False))


# One row of each class plus a borderline one, so a wrong column order changes the answer.
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 4.2, 1.5]]


def records(rows):
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def bodies(rows):
    """(shape name, endpoint, body) for every supported request shape carrying ``rows``."""
    reversed_columns = list(reversed(COLUMNS))
    return [
        ("inputs-columns", "/predict", {"inputs": {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}}),
        ("inputs-rows", "/predict", {"inputs": rows}),
        ("data", "/predict", {"data": rows}),
        ("features", "/predict", {"features": rows}),
        ("instances-rows", "/predict", {"instances": rows}),
        ("instances-records", "/predict", {"instances": records(rows)}),
        ("dataframe_split", "/predict", {"dataframe_split": {"columns": COLUMNS, "data": rows}}),
        (
            "dataframe_split-reordered",
            "/predict",
            {"dataframe_split": {"columns": reversed_columns, "data": [list(reversed(r)) for r in rows]}},
        ),
        ("dataframe_records", "/predict", {"dataframe_records": records(rows)}),
        ("batch-inputs", "/predict/batch", {"inputs": rows}),
        ("batch-records", "/predict/batch", {"dataframe_records": records(rows)}),
        ("invocations-split", "/invocations", {"dataframe_split": {"columns": COLUMNS, "data": rows}}),
        ("invocations-records", "/invocations", {"dataframe_records": records(rows)}),
        ("invocations-instances", "/invocations", {"instances": records(rows)}),
        ("invocations-inputs", "/invocations", {"inputs": rows}),
    ]
