"""The ``mlops`` command: deploy a training script and watch it, inspect deployments and models, roll back.

Exit codes: 0 ok, 1 deploy failed / platform unhealthy / server error, 2 usage error, 3 server unreachable,
4 the server refused the request (HTTP 4xx; the message and request id are printed).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from control_api.cli_user import output
from control_api.cli_user.config import ConfigError, resolve_connection
from control_api.cli_user.deploy_request import DeployArgumentError, build_canary_strategy, build_deploy_body
from control_api.cli_user.predict_example import curl_command, example_body
from control_api.cli_user.progress import StepBoard, make_progress
from control_api.client import ApiError, MlopsClient, ServerUnreachable

app = typer.Typer(
    name="mlops",
    help="Deploy training scripts to the MLOps GitOps service and follow them live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(stderr: bool = False) -> Console:
    # Piped output is read by people in CI logs and by grep: no 80-column squeeze of tables and ids there.
    width = None if Console(stderr=stderr).is_terminal else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


console = _console()
errors = _console(stderr=True)

ServerOption = Annotated[
    str | None, typer.Option("--server", help="Control service URL (env MLOPS_SERVER, config file `server`).")
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", help="API key, sent as X-API-Key (env MLOPS_API_KEY, config file `api_key`)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]
NamespaceOption = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Kubernetes namespace (default: the server's).")
]
NoWaitOption = Annotated[bool, typer.Option("--no-wait", help="Return once the server accepted the request.")]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint", help="The endpoint (a DNS-1123 label; default: the model's name)."),
]

CanaryOption = Annotated[
    str | None,
    typer.Option(
        "--canary",
        metavar="STEPS",
        help=(
            "Release as a canary beside the version served now, in these weights in percent, e.g. 25,50,100: "
            "each step is analysed before the next; 100 or the last step promotes, a failed analysis rolls back."
        ),
        rich_help_panel="Canary release",
    ),
]
CanaryIntervalOption = Annotated[
    float | None,
    typer.Option(
        "--canary-interval",
        metavar="SECONDS",
        help="How long each canary step runs before its analysis (default: the server's, 60).",
        rich_help_panel="Canary release",
    ),
]
MaxErrorRateOption = Annotated[
    float | None,
    typer.Option(
        "--max-error-rate",
        metavar="RATE",
        help="Highest share of the canary's answers that may be errors, 0..1 (default 0.05).",
        rich_help_panel="Canary release",
    ),
]
MaxLatencyOption = Annotated[
    float | None,
    typer.Option(
        "--max-latency-ms",
        metavar="MS",
        help="Highest canary latency at --latency-percentile, in ms (default: not checked).",
        rich_help_panel="Canary release",
    ),
]
LatencyPercentileOption = Annotated[
    float | None,
    typer.Option(
        "--latency-percentile",
        metavar="P",
        help="The percentile --max-latency-ms holds for (default 99).",
        rich_help_panel="Canary release",
    ),
]
MinRequestsOption = Annotated[
    int | None,
    typer.Option(
        "--min-requests",
        metavar="N",
        help="Fewest requests the canary must answer in a step for a verdict (default 20).",
        rich_help_panel="Canary release",
    ),
]


@app.callback()
def _global(ctx: typer.Context, server: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    ctx.obj = {"server": server, "api_key": api_key}


# ---- plumbing ------------------------------------------------------------------------------------


@contextlib.contextmanager
def reporting(as_json: bool) -> Iterator[None]:
    """Turn client errors into a printed message and the exit code that names the kind of failure."""
    try:
        yield
    except (DeployArgumentError, ConfigError) as exc:
        _fail(as_json, output.EXIT_USAGE, {"code": "usage_error", "message": str(exc)})
    except ServerUnreachable as exc:
        _fail(as_json, output.EXIT_UNREACHABLE, {"code": "unreachable", "message": str(exc), "server": exc.server})
    except ApiError as exc:
        code = output.EXIT_CLIENT_ERROR if exc.is_client_error else output.EXIT_FAILED
        _fail(as_json, code, exc.as_dict())


def _fail(as_json: bool, exit_code: int, error: dict[str, Any]) -> None:
    if as_json:
        output.print_json({"error": error})
    else:
        line = f"[bold red]error[/]: {error['message']}"
        if error.get("code") and error["code"] not in ("usage_error", "unreachable"):
            line += (
                f" [dim](HTTP {error.get('status')} {error['code']}, request id {error.get('request_id') or '-'})[/]"
            )
        errors.print(line)
        details = error.get("details")
        if isinstance(details, list):
            for item in details[:10]:
                if isinstance(item, dict) and item.get("field"):
                    errors.print(f"  {item['field']}: {item.get('message')} [dim]({item.get('rule')})[/]")
    raise typer.Exit(exit_code)


def _client(ctx: typer.Context, server: str | None, api_key: str | None) -> MlopsClient:
    given = ctx.obj or {}
    connection = resolve_connection(server or given.get("server"), api_key or given.get("api_key"))
    return MlopsClient(connection.server, connection.api_key)


def _exit_for(view: dict[str, Any], *, aborted_ok: bool = False) -> int:
    """1 for a failed deployment, and for a canary that was rolled back unless aborting it was the request."""
    if view.get("status") in output.FAILED_STATUSES:
        return output.EXIT_FAILED
    if view.get("status") == "rolled_back" and view.get("canary") and not aborted_ok:
        return output.EXIT_FAILED
    return output.EXIT_OK


def follow(client: MlopsClient, accepted: dict[str, Any], *, as_json: bool, show_logs: bool) -> dict[str, Any]:
    """Follow a deployment's event stream to its end; returns the final deployment view."""
    board = StepBoard.from_view(accepted)
    deployment_id = accepted["deployment_id"]
    try:
        if as_json:
            for event in client.events(deployment_id):
                board.apply(event)
        else:
            with make_progress(board, console, show_logs) as progress:
                for event in client.events(deployment_id):
                    progress.update(event)
    except KeyboardInterrupt:
        errors.print(
            "\nstopped following; the deployment goes on on the server. "
            f"Follow it again with: mlops events {deployment_id}"
        )
        raise typer.Exit(130) from None
    return board.final_view or client.deployment(deployment_id)


def summarise(client: MlopsClient, view: dict[str, Any]) -> None:
    status = view["status"]
    took = view.get("duration_seconds")
    took_text = f" in {took:.1f}s" if took is not None else ""
    name, version = view["model_name"], view.get("model_version")
    if view.get("endpoint") not in (None, name):
        name = f"{name} at endpoint {view['endpoint']}"
    if status in output.FAILED_STATUSES:
        error = view.get("error") or {}
        step = error.get("step") or next((s["name"] for s in view["steps"] if s["status"] == "failed"), "?")
        errors.print(
            f"[bold red]{view['kind']} {status}[/] at step [bold]{step}[/]{took_text}: {error.get('message', '')}"
        )
        if error.get("code"):
            errors.print(
                f"  error code {error['code']} (see docs/troubleshooting.md); "
                f"details: mlops deployments {view['deployment_id']}"
            )
        return
    if status == "awaiting_review":
        console.print(f"[yellow]awaiting review[/]: {view.get('pull_request_url') or 'a pull request was opened'}")
        console.print(
            f"  merge it and the service syncs the change; check on it with: mlops deployments {view['deployment_id']}"
        )
        return
    canary = view.get("canary")
    if canary and status == "rolled_back":
        console.print(
            f"[yellow]canary aborted[/]: {name} version {version} was rolled back to version "
            f"{canary.get('stable_version') or '?'}{took_text}"
        )
        _canary_summary(canary, view)
        return
    if status == "undeployed":
        console.print(f"[green]undeployed[/] {name}{took_text}; commit {view.get('commit') or '-'}")
        return
    if status == "registered":
        console.print(f"[green]registered[/] {name} version {version} (run {view.get('run_id')}){took_text}")
        console.print("  the service has no serving target (target 'none'), so there is no URL to call")
        return
    console.print(f"[green]{status}[/] {name} version {version}{took_text}")
    if canary and canary.get("phase") == "promoted":
        _canary_summary(canary, view)
    url = view.get("inference_url")
    if not url:
        return
    console.print(f"  url    {url}")
    if view.get("commit") and not canary:  # a canary's summary above has it
        console.print(f"  commit {view['commit']}")
    metadata_url = (view.get("endpoints") or {}).get("metadata")
    body, from_model = example_body(client.model_metadata(metadata_url) if metadata_url else None)
    console.print("try it:" if from_model else "try it (a generic body: use your model's input columns):")
    console.print(curl_command(url, body), markup=False, soft_wrap=True)


def _canary_summary(canary: dict[str, Any], view: dict[str, Any]) -> None:
    """How a finished canary went: who steered it, why it was aborted, each analysed step, and its last commit."""

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    steps = ", ".join(f"{weight}%" for weight in canary.get("steps") or [])
    by = f" by {canary['steered_by']}" if canary.get("steered_by") else ""
    if canary.get("phase") == "promoted":
        say(f"  canary promoted{by} (steps {steps})")
    else:
        say(f"  canary aborted{by} (steps {steps}): {canary.get('abort_reason') or '-'}")
    evidence = output.canary_evidence_lines(canary)
    if not evidence:
        say("  no step was analysed")
    for line in evidence:
        say(f"  {line}")
    say(f"  commit {view.get('commit') or '-'}")
    if canary.get("phase") != "promoted":
        say(f"  details: mlops deployments {view['deployment_id']}")


# ---- commands ------------------------------------------------------------------------------------


@app.command()
def deploy(
    ctx: typer.Context,
    script: Annotated[Path, typer.Argument(help="Training script that logs a model with MLflow.", dir_okay=False)],
    model_name: Annotated[str, typer.Option("--model-name", "-m", help="Registered model name (a DNS-1123 label).")],
    requirements_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--requirements-file", "-r", help="requirements.txt to install for training and serving (repeatable)."
        ),
    ] = None,
    requirement: Annotated[
        list[str] | None,
        typer.Option("--requirement", help="One requirement specifier, e.g. scikit-learn==1.5.2 (repeatable)."),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for the serving container (repeatable).")
    ] = None,
    replicas: Annotated[int | None, typer.Option(help="Serving replicas.", min=1)] = None,
    cpu: Annotated[str | None, typer.Option(help="CPU limit, e.g. 500m.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 1Gi.")] = None,
    namespace: NamespaceOption = None,
    endpoint: EndpointOption = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment name.")] = None,
    review: Annotated[
        bool, typer.Option("--review", help="Expect a pull request review (review mode is a server setting).")
    ] = False,
    canary: CanaryOption = None,
    canary_interval: CanaryIntervalOption = None,
    max_error_rate: MaxErrorRateOption = None,
    max_latency_ms: MaxLatencyOption = None,
    latency_percentile: LatencyPercentileOption = None,
    min_requests: MinRequestsOption = None,
    no_wait: NoWaitOption = False,
    logs: Annotated[
        bool,
        typer.Option("--logs", help="Print every step's log lines as they arrive (a canary's are always printed)."),
    ] = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Train SCRIPT, register its model, serve it, and show each step live."""
    with reporting(as_json):
        strategy = build_canary_strategy(
            canary,
            interval_seconds=canary_interval,
            max_error_rate=max_error_rate,
            max_latency_ms=max_latency_ms,
            latency_percentile=latency_percentile,
            min_requests=min_requests,
        )
        body = build_deploy_body(
            script,
            model_name=model_name,
            requirement_files=requirements_files or [],
            requirements=requirement or [],
            env=env or [],
            replicas=replicas,
            cpu=cpu,
            memory=memory,
            namespace=namespace,
            endpoint=endpoint,
            experiment=experiment,
            strategy=strategy,
        )
        if review and not as_json:
            # The API has no per-request switch: whether a deploy waits for a merged pull request is decided
            # by the server's MLOPS_GIT__REVIEW_MODE, so the flag only sets expectations.
            errors.print(
                "note: review mode is a server setting (MLOPS_GIT__REVIEW_MODE); --review sends nothing. "
                "If it is on, this deploy waits at 'awaiting_review' until its pull request is merged, and "
                "is followed to its end (Ctrl-C stops following; the deploy goes on)."
            )
        with _client(ctx, server, api_key) as client:
            accepted = client.deploy(body)
            if no_wait:
                _accepted(accepted, as_json)
                return
            if not as_json:
                how = f" as a canary in steps {strategy['steps']}" if strategy else ""
                console.print(
                    f"deploying [bold]{model_name}[/] from {script.name}{how} (deployment {accepted['deployment_id']})"
                )
            final = follow(client, accepted, as_json=as_json, show_logs=logs)
            output.print_json(final) if as_json else summarise(client, final)
    raise typer.Exit(_exit_for(final))


def _accepted(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.print_json(view)
        return
    console.print(f"accepted: {view['kind']} {view['deployment_id']} of {view['model_name']} ({view['status']})")
    console.print(f"  follow it: mlops events {view['deployment_id']}")


@app.command()
def deployments(
    ctx: typer.Context,
    deployment_id: Annotated[str | None, typer.Argument(help="Show this deployment with its steps.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List deployments, newest first, or show one."""
    with reporting(as_json), _client(ctx, server, api_key) as client:
        if deployment_id:
            view = client.deployment(deployment_id)
            output.print_json(view) if as_json else output.deployment_detail(console, view)
            return
        page = client.deployments(model=model, status=status, limit=limit)
        output.print_json(page) if as_json else console.print(output.deployments_table(page))


@app.command()
def models(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Show this model's versions with their metrics.")] = None,
    namespace: NamespaceOption = None,
    endpoint: EndpointOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List registered models, or the versions of one."""
    with reporting(as_json), _client(ctx, server, api_key) as client:
        if name:
            model = client.model(name, namespace=namespace, endpoint=endpoint)
            if as_json:
                output.print_json(model)
                return
            console.print(output.model_versions_table(model))
            for line in output.served_lines(model):
                console.print(line)
            return
        body = client.models()
        output.print_json(body) if as_json else console.print(output.models_table(body))


@app.command()
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    namespace: NamespaceOption = None,
    endpoint: EndpointOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """The model's deploy, rollback and undeploy commits at one endpoint in the GitOps repo."""
    with reporting(as_json), _client(ctx, server, api_key) as client:
        body = client.history(name, namespace=namespace, endpoint=endpoint)
        if as_json:
            output.print_json(body)
            return
        console.print(output.history_table(body))
        syncs = output.target_syncs_table(body)
        if syncs is not None:
            console.print(syncs)


@app.command()
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Version to serve (default: the one before the current).")
    ] = None,
    namespace: NamespaceOption = None,
    endpoint: EndpointOption = None,
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Serve an earlier version again: a revert-style commit, then a sync."""
    with reporting(as_json), _client(ctx, server, api_key) as client:
        accepted = client.rollback(name, version=to, namespace=namespace, endpoint=endpoint)
        final = _follow_or_return(client, accepted, as_json, no_wait)
    raise typer.Exit(_exit_for(final))


@app.command("deploy-version")
def deploy_version(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="A registered version of the model.")],
    replicas: Annotated[int | None, typer.Option("--replicas", min=1, help="Replicas to run.")] = None,
    namespace: NamespaceOption = None,
    endpoint: EndpointOption = None,
    canary: CanaryOption = None,
    canary_interval: CanaryIntervalOption = None,
    max_error_rate: MaxErrorRateOption = None,
    max_latency_ms: MaxLatencyOption = None,
    latency_percentile: LatencyPercentileOption = None,
    min_requests: MinRequestsOption = None,
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Serve a registered version without training: its earlier image, or one built from the registry."""
    with reporting(as_json):
        strategy = build_canary_strategy(
            canary,
            interval_seconds=canary_interval,
            max_error_rate=max_error_rate,
            max_latency_ms=max_latency_ms,
            latency_percentile=latency_percentile,
            min_requests=min_requests,
        )
        with _client(ctx, server, api_key) as client:
            accepted = client.deploy_version(
                name, version, namespace=namespace, endpoint=endpoint, replicas=replicas, strategy=strategy
            )
            final = _follow_or_return(client, accepted, as_json, no_wait)
    raise typer.Exit(_exit_for(final))


@app.command()
def promote(
    ctx: typer.Context,
    deployment_id: Annotated[str, typer.Argument(help="The canary deployment to promote.")],
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Promote a running canary now, skipping its remaining steps; follows it until it is deployed."""
    with reporting(as_json), _client(ctx, server, api_key) as client:
        accepted = client.promote(deployment_id)
        final = _follow_or_return(client, accepted, as_json, no_wait, heading="promoting the canary")
    raise typer.Exit(_exit_for(final))


@app.command()
def abort(
    ctx: typer.Context,
    deployment_id: Annotated[str, typer.Argument(help="The canary deployment to abort.")],
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Abort a running canary: a commit restores the stable version alone; follows it until it is rolled back."""
    with reporting(as_json), _client(ctx, server, api_key) as client:
        accepted = client.abort(deployment_id)
        final = _follow_or_return(client, accepted, as_json, no_wait, heading="aborting the canary")
    raise typer.Exit(_exit_for(final, aborted_ok=True))


@app.command()
def undeploy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    namespace: NamespaceOption = None,
    endpoint: EndpointOption = None,
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Remove the model's manifests at one endpoint in a commit and prune what ran them."""
    with reporting(as_json), _client(ctx, server, api_key) as client:
        accepted = client.undeploy(name, namespace=namespace, endpoint=endpoint)
        final = _follow_or_return(client, accepted, as_json, no_wait)
    raise typer.Exit(_exit_for(final))


@app.command()
def endpoints(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", help="Only this model's endpoints.")] = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Every endpoint: the model and version it serves, its URL and health."""
    with reporting(as_json), _client(ctx, server, api_key) as client:
        body = client.endpoints(namespace=namespace, model=model)
        output.print_json(body) if as_json else console.print(output.endpoints_table(body))


# How long ``mlops cancel`` waits for a step that is still stopping, and how often it looks.
CANCEL_WAIT_SECONDS = 600.0
CANCEL_POLL_SECONDS = 0.5


@app.command()
def cancel(
    ctx: typer.Context,
    deployment_id: Annotated[str, typer.Argument(help="The deployment to cancel.")],
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Stop a running deployment and undo what it made (version, image tag, commit, pull request)."""
    with reporting(as_json), _client(ctx, server, api_key) as client:
        view = client.cancel(deployment_id)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while not no_wait and view["status"] == "cancelling" and time.monotonic() < deadline:
            time.sleep(CANCEL_POLL_SECONDS)
            view = client.deployment(deployment_id)
        if as_json:
            output.print_json(view)
        else:
            error = view.get("error") or {}
            details = error.get("details") or {}
            console.print(
                f"{view['status']}: {view['kind']} {view['deployment_id']} of {view['model_name']} "
                f"(at step {details.get('step') or '-'}, by {details.get('cancelled_by') or '-'})"
            )
    raise typer.Exit(output.EXIT_OK if view["status"] == "cancelled" or no_wait else output.EXIT_FAILED)


def _follow_or_return(
    client: MlopsClient, accepted: dict[str, Any], as_json: bool, no_wait: bool, *, heading: str | None = None
) -> dict[str, Any]:
    if no_wait:
        _accepted(accepted, as_json)
        return accepted
    if not as_json:
        console.print(
            f"{heading or accepted['kind']} of [bold]{accepted['model_name']}[/] "
            f"(deployment {accepted['deployment_id']})"
        )
    final = follow(client, accepted, as_json=as_json, show_logs=False)
    output.print_json(final) if as_json else summarise(client, final)
    return final


@app.command()
def status(
    ctx: typer.Context,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Health of every component the platform depends on (exit 1 when one is unhealthy)."""
    with reporting(as_json), _client(ctx, server, api_key) as client:
        body = client.status()
        output.print_json(body) if as_json else console.print(output.status_table(body, client.server))
    raise typer.Exit(output.EXIT_OK if body.get("status") == "healthy" else output.EXIT_FAILED)


@app.command()
def events(
    ctx: typer.Context,
    deployment_id: Annotated[str, typer.Argument(help="Deployment id.")],
    after: Annotated[int | None, typer.Option("--after", min=0, help="Start after this event id.")] = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Print a deployment's events (replayed, then live) until it ends; --json prints one JSON object per line."""
    final: dict[str, Any] = {}
    with reporting(as_json), _client(ctx, server, api_key) as client:
        for event in client.events(deployment_id, after=after):
            data = event.json() or {}
            if event.event == "end":
                final = data
            if as_json:
                print(
                    json.dumps({"id": int(event.id) if event.id else None, "event": event.event, "data": data}),
                    flush=True,
                )
            else:
                console.print(_event_line(event.id, event.event, data), markup=False)
    raise typer.Exit(_exit_for(final))


def _event_line(event_id: str | None, kind: str, data: dict[str, Any]) -> str:
    prefix = f"#{event_id:<5} " if event_id else "       "
    if kind == "step":
        message = f": {data['message']}" if data.get("message") else ""
        return f"{prefix}step   {data.get('step')} {data.get('status')}{message}"
    if kind == "log":
        return f"{prefix}log    {data.get('step')} | {data.get('line', '')}"
    if kind == "status":
        return f"{prefix}status {data.get('status')}"
    if kind == "end":
        return (
            f"{prefix}end    {data.get('status')} (model {data.get('model_name')} version {data.get('model_version')})"
        )
    return f"{prefix}{kind} {json.dumps(data)}"


def main() -> None:
    app()


if __name__ == "__main__":
    main()
