"""The pull request description: a markdown table a reviewer can trust, plus how to roll back."""

from __future__ import annotations

from control_api.adapters.forge import render_pr_body

NEW = {
    "version": 3,
    "image": "127.0.0.1:5000/mlops/iris@sha256:aa",
    "run_id": "run-new",
    "metrics": {"accuracy": 0.97, "f1": 0.9},
}
CURRENT = {
    "version": 2,
    "image": "127.0.0.1:5000/mlops/iris@sha256:bb",
    "run_id": "run-old",
    "metrics": {"accuracy": 0.95, "loss": 0.3},
}


def table_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


def test_table_compares_new_and_current_values_and_metrics():
    rows = table_rows(render_pr_body("iris", NEW, CURRENT))

    assert rows["Version"] == ["3", "2"]
    assert rows["Image"] == ["`127.0.0.1:5000/mlops/iris@sha256:aa`", "`127.0.0.1:5000/mlops/iris@sha256:bb`"]
    assert rows["MLflow run"] == ["`run-new`", "`run-old`"]
    assert rows["metric `accuracy`"] == ["0.97 (+0.02)", "0.95"]
    assert rows["metric `f1`"] == ["0.9", "—"]
    assert rows["metric `loss`"] == ["—", "0.3"]


def test_first_deploy_has_empty_current_column_and_rollback_help():
    body = render_pr_body("iris", {**NEW, "metrics": {}}, None)
    assert "First deployment" in body
    assert table_rows(body)["Version"] == ["3", "—"]
    assert "No metrics were logged." in body
    assert "### How to roll back" in body and "git revert" in body


def test_rollback_help_names_the_version_that_comes_back():
    assert "version 2 come back" in render_pr_body("iris", NEW, CURRENT)


def test_cell_content_cannot_break_the_table():
    body = render_pr_body("a|b", {**NEW, "run_id": "x|y\nz", "metrics": {"m|1": 1}}, None)
    rows = table_rows(body)
    assert rows["MLflow run"] == ["`x\\|y z`", "—"]
    assert all(len(cells) == 2 for cells in rows.values())
