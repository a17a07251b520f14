"""How results look: JSON for scripts, rich tables for people. Exit codes live here too."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

EXIT_OK = 0
EXIT_FAILED = 1  # the deploy failed or timed out, the platform is unhealthy, or the server answered 5xx
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CLIENT_ERROR = 4  # the server refused the request (HTTP 4xx)

FAILED_STATUSES = frozenset({"failed", "timed_out", "cancelled"})


def print_json(value: Any) -> None:
    # Plain print, not rich: scripts parse this, so no wrapping, colour or highlighting.
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _short_time(value: str | None) -> str:
    return (value or "")[:19].replace("T", " ")


def deployments_table(page: dict[str, Any]) -> Table:
    # Full ids (they are what the other commands take), so the rest stays narrow enough for 80 columns.
    table = Table(title=f"deployments ({len(page['items'])} of {page['total']})", title_justify="left")
    table.add_column("id", no_wrap=True)
    for column in ("model", "ver", "status", "created (UTC)", "took"):
        table.add_column(column)
    for item in page["items"]:
        took = item.get("duration_seconds")
        model = item["model_name"] if item["kind"] == "deploy" else f"{item['model_name']} ({item['kind']})"
        table.add_row(
            item["deployment_id"],
            model,
            _cell(item.get("model_version")),
            item["status"],
            _short_time(item["created_at"])[5:],
            f"{took:.0f}s" if took is not None else "",
        )
    return table


def deployment_detail(console: Console, view: dict[str, Any]) -> None:
    console.print(
        f"[bold]{view['deployment_id']}[/] {view['kind']} of [bold]{view['model_name']}[/] "
        f"in {view['namespace']}: [bold]{view['status']}[/]"
    )
    fields = (
        ("model version", view.get("model_version")),
        ("run id", view.get("run_id")),
        ("image", view.get("image_uri")),
        ("commit", view.get("commit")),
        ("pull request", view.get("pull_request_url")),
        ("url", view.get("inference_url")),
        ("requested by", view.get("requested_by")),
        ("created", view.get("created_at")),
        ("finished", view.get("finished_at")),
    )
    for label, value in fields:
        if value:
            console.print(f"  {label:<13} {value}", highlight=False)
    if view.get("canary"):
        for line in canary_lines(view["canary"]):
            console.print(f"  {line}", markup=False, highlight=False)
    table = Table(box=None, padding=(0, 2))
    for column in ("step", "status", "attempts", "took", "message"):
        table.add_column(column)
    for step in view["steps"]:
        took = step.get("duration_seconds")
        table.add_row(
            step["name"],
            step["status"],
            str(step["attempts"]),
            f"{took:.1f}s" if took is not None else "",
            _cell(step.get("message")),
        )
    console.print(table)
    if view.get("error"):
        error = view["error"]
        console.print(f"[red]error[/] {error.get('code')}: {error.get('message')}", highlight=False)


def canary_evidence_lines(canary: dict[str, Any]) -> list[str]:
    """One line per analysed step: ``step 1/2 at 25%: pass: 57 requests, 0 errors ...``."""
    return [
        f"step {item.get('step')} at {item.get('weight')}%: {item.get('outcome') or '?'}: {item.get('summary', '')}"
        for item in canary.get("evidence") or []
    ]


def canary_lines(canary: dict[str, Any]) -> list[str]:
    """Where a canary release stands, as ``label value`` lines (server strings: print with markup=False)."""
    steps = ", ".join(f"{weight}%" for weight in canary.get("steps") or [])
    rows: list[tuple[str, str]] = [("canary", f"{canary.get('phase')} (steps {steps})")]
    if canary.get("step"):
        # The split says how the weight became replicas ("weight 25% asked; by replica ratio ...").
        where = canary.get("split") or f"weight {canary.get('weight')}%"
        rows.append(("canary step", f"{canary['step']}: {where}"))
    if canary.get("stable_version") or canary.get("stable_commit"):
        commit = f" at {canary['stable_commit'][:12]}" if canary.get("stable_commit") else ""
        rows.append(("stable", f"version {_cell(canary.get('stable_version'))}{commit}"))
    if canary.get("abort_reason"):
        rows.append(("abort reason", canary["abort_reason"]))
    if canary.get("steered_by"):
        rows.append(("steered by", canary["steered_by"]))
    for number, line in enumerate(canary_evidence_lines(canary)):
        rows.append(("evidence" if number == 0 else "", line))
    return [f"{label:<13} {value}" for label, value in rows]


def models_table(body: dict[str, Any]) -> Table:
    table = Table(title=f"registered models ({body['total']})", title_justify="left")
    for column in ("name", "latest version", "aliases", "updated (UTC)", "description"):
        table.add_column(column)
    for model in body["models"]:
        aliases = ", ".join(f"{k}=v{v}" for k, v in (model.get("aliases") or {}).items())
        table.add_row(
            model["name"],
            _cell(model.get("latest_version")),
            aliases,
            _short_time(model.get("last_updated_timestamp")),
            model.get("description") or "",
        )
    return table


def model_versions_table(model: dict[str, Any]) -> Table:
    table = Table(title=f"{model['name']}: {len(model['versions'])} version(s)", title_justify="left")
    for column in ("version", "status", "aliases", "created (UTC)", "run id", "metrics"):
        table.add_column(column)
    for version in model["versions"]:
        metrics = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in sorted(version.get("metrics", {}).items())
        )
        table.add_row(
            version["version"],
            _cell(version.get("status")),
            ", ".join(version.get("aliases") or []),
            _short_time(version.get("creation_timestamp")),
            _cell(version.get("run_id")),
            metrics,
        )
    return table


def served_lines(model: dict[str, Any]) -> list[str]:
    """What the target serves, and the drift from git's branch when there is one."""
    served = model.get("served")
    if not served:
        return [] if "served" not in model else ["served: nothing is deployed in this namespace"]
    lines = [
        f"served in {served['namespace']}: version {_cell(served.get('version'))} "
        f"(commit {(served.get('commit') or '-')[:12]}), {served.get('how')}"
    ]
    drift = model.get("drift")
    if drift:
        lines.append(f"[yellow]drift:[/] {drift['message']}")
    return lines


def target_syncs_table(body: dict[str, Any]) -> Table | None:
    syncs = body.get("target_syncs") or []
    if not syncs:
        return None
    table = Table(title="what the cluster applied (Argo CD history), newest first", title_justify="left")
    for column in ("id", "kind", "version", "commit", "applied (UTC)", "by"):
        table.add_column(column)
    for sync in syncs:
        kind = "[yellow]rollback[/]" if sync.get("kind") == "rollback" else "sync"
        by = "automated" if sync.get("automated") else _cell(sync.get("initiated_by"))
        table.add_row(
            str(sync["id"]),
            kind,
            _cell(sync.get("version")),
            (sync.get("commit") or "-")[:12],
            _short_time(sync.get("deployed_at")),
            by,
        )
    return table


def history_table(body: dict[str, Any]) -> Table:
    where = body["namespace"]
    if body.get("endpoint") not in (None, body["model_name"]):
        where = f"endpoint {body['endpoint']} of {where}"
    table = Table(title=f"{body['model_name']} in {where}: git history, newest first", title_justify="left")
    for column in ("commit", "action", "version", "date", "by", "deployment"):
        table.add_column(column)
    for commit in body["commits"]:
        table.add_row(
            commit["sha"][:12],
            _cell(commit.get("action")),
            _cell(commit.get("version")),
            _cell(commit.get("date")),
            _cell(commit.get("requested_by") or commit.get("author")),
            _cell(commit.get("deployment_id")),
        )
    return table


def endpoints_table(body: dict[str, Any]) -> Table:
    table = Table(title=f"{body['total']} endpoint(s)", title_justify="left")
    for column in ("namespace", "endpoint", "model", "version", "serving", "healthy", "url"):
        table.add_column(column)
    for endpoint in body["endpoints"]:
        served = endpoint.get("served") or {}
        healthy = served.get("healthy")
        table.add_row(
            endpoint["namespace"],
            endpoint["endpoint"],
            endpoint["model_name"],
            _cell(endpoint.get("version")),
            _cell(served.get("version")),
            "[green]yes[/]" if healthy else ("-" if healthy is None else "[red]no[/]"),
            _cell(served.get("url")),
        )
    return table


def status_table(body: dict[str, Any], server: str) -> Table:
    overall = body.get("status", "unknown")
    colour = "green" if overall == "healthy" else "red"
    table = Table(title=f"{server}: [{colour}]{overall}[/] (target {body.get('target')})", title_justify="left")
    for column in ("component", "status", "latency", "error"):
        table.add_column(column)
    for name, component in body.get("components", {}).items():
        colour = "green" if component.get("status") == "healthy" else "red"
        table.add_row(
            name,
            f"[{colour}]{component.get('status')}[/]",
            f"{component.get('latency_ms', 0):.0f} ms",
            _cell(component.get("error")),
        )
    return table
