"""Rendered bytes equal reviewed golden files. UPDATE_GOLDEN=1 rewrites them (then review the diff).

Under CI the rewrite is refused: a CI run with UPDATE_GOLDEN set would make every comparison pass
against whatever the renderer writes today.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from render_helpers import full_spec, minimal_spec

from renderer import ApplicationSpec, application_name, model_dir, render_application, render_model
from tests.support.availability import IN_CI

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _compare(case: str, files: dict[str, bytes]) -> None:
    case_dir = GOLDEN_DIR / case
    if UPDATE and IN_CI:
        pytest.fail(
            "UPDATE_GOLDEN=1 is refused under CI=true: golden files are rewritten locally and reviewed", pytrace=False
        )
    if UPDATE:
        for relative, content in files.items():
            target = case_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    expected_paths = sorted(str(path.relative_to(case_dir)) for path in case_dir.rglob("*") if path.is_file())
    assert expected_paths, f"no golden files in {case_dir}; run with UPDATE_GOLDEN=1 and review them"
    assert sorted(files) == expected_paths
    for relative, content in files.items():
        expected = (case_dir / relative).read_bytes()
        assert content.decode() == expected.decode(), f"{relative} differs from golden (UPDATE_GOLDEN=1 to refresh)"


def test_minimal_model_matches_golden():
    _compare("minimal", render_model(minimal_spec()))


def test_full_model_matches_golden():
    _compare("full", render_model(full_spec()))


@pytest.mark.parametrize("automated", [False, True], ids=["manual", "automated"])
def test_application_matches_golden(automated):
    app = ApplicationSpec(
        name=application_name("production", "churn"),
        repo_url="https://git.example.com/mlops/gitops.git",
        path=model_dir("production", "churn"),
        destination_namespace="production",
        automated_sync=automated,
        labels={"app.kubernetes.io/part-of": "mlops", "mlops.io/model": "churn"},
    )
    _compare(f"application-{'automated' if automated else 'manual'}", render_application(app))
