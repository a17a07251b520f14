"""Command-line arguments of ``mlops deploy`` -> the body of POST /mlops/deploy."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class DeployArgumentError(ValueError):
    """An argument the user must fix before anything is sent (exit code 2)."""


def read_requirements_file(path: Path, _seen: frozenset[Path] = frozenset()) -> list[str]:
    """Requirement specifiers of a requirements.txt; nested ``-r`` files are followed, other pip options refused."""
    path = path.resolve()
    if path in _seen:
        raise DeployArgumentError(f"{path} includes itself through -r")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeployArgumentError(f"cannot read requirements file {path}: {exc.strerror or exc}") from exc
    requirements: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for prefix in ("-r ", "--requirement ", "--requirement="):
            if line.startswith(prefix):
                nested = Path(line[len(prefix) :].strip())
                requirements += read_requirements_file(path.parent / nested, _seen | {path})
                break
        else:
            if line.startswith("-"):
                raise DeployArgumentError(
                    f"{path}:{number}: pip option {line.split()[0]!r} is not accepted; the service takes requirement "
                    "specifiers only (package indexes are a server setting)"
                )
            requirements.append(line)
    return requirements


def parse_env_pairs(pairs: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise DeployArgumentError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def parse_canary_steps(text: str) -> list[int]:
    """``25,50,100`` -> [25, 50, 100]; the server checks the rest (1..100, increasing, one below 100)."""
    parts = [part.strip().rstrip("%") for part in text.split(",")]
    try:
        steps = [int(part) for part in parts]
    except ValueError:
        steps = []
    if not steps:
        raise DeployArgumentError(
            f"--canary {text!r}: expected weights in percent separated by commas, e.g. --canary 25,50,100"
        )
    return steps


def build_canary_strategy(
    steps: str | None,
    *,
    interval_seconds: float | None = None,
    max_error_rate: float | None = None,
    max_latency_ms: float | None = None,
    latency_percentile: float | None = None,
    min_requests: int | None = None,
) -> dict[str, Any] | None:
    """The ``strategy`` of a deploy request from the canary options; None without ``--canary``.

    An option left out is not sent, so the server's default applies.
    """
    analysis = {
        key: value
        for key, value in (
            ("max_error_rate", max_error_rate),
            ("max_latency_ms", max_latency_ms),
            ("latency_percentile", latency_percentile),
            ("min_requests", min_requests),
        )
        if value is not None
    }
    if steps is None:
        given = [
            option
            for option, value in (
                ("--canary-interval", interval_seconds),
                ("--max-error-rate", max_error_rate),
                ("--max-latency-ms", max_latency_ms),
                ("--latency-percentile", latency_percentile),
                ("--min-requests", min_requests),
            )
            if value is not None
        ]
        if given:
            raise DeployArgumentError(
                f"{', '.join(given)} only apply to a canary release: add --canary STEPS, e.g. --canary 25,50,100"
            )
        return None
    strategy: dict[str, Any] = {"type": "canary", "steps": parse_canary_steps(steps)}
    if interval_seconds is not None:
        strategy["interval_seconds"] = interval_seconds
    if analysis:
        strategy["analysis"] = analysis
    return strategy


def build_deploy_body(
    script: Path,
    *,
    model_name: str,
    requirement_files: Sequence[Path] = (),
    requirements: Sequence[str] = (),
    env: Sequence[str] = (),
    replicas: int | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    namespace: str | None = None,
    endpoint: str | None = None,
    experiment: str | None = None,
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        source = script.read_bytes()
    except OSError as exc:
        raise DeployArgumentError(f"cannot read training script {script}: {exc.strerror or exc}") from exc
    collected: list[str] = []
    for path in requirement_files:
        collected += read_requirements_file(path)
    collected += [r.strip() for r in requirements if r.strip()]
    body: dict[str, Any] = {
        "script_content": base64.b64encode(source).decode("ascii"),
        "script_name": script.name,
        "model_name": model_name,
        # Order kept, duplicates dropped: the server hashes requirements into a cached environment.
        "requirements": list(dict.fromkeys(collected)),
    }
    environment = parse_env_pairs(list(env))
    if environment:
        body["environment_vars"] = environment
    config = {
        key: value
        for key, value in (("replicas", replicas), ("cpu_limit", cpu), ("memory_limit", memory))
        if value is not None
    }
    if config:
        body["deployment_config"] = config
    if namespace:
        body["namespace"] = namespace
    if endpoint:
        body["endpoint_name"] = endpoint
    if experiment:
        body["experiment_name"] = experiment
    if strategy:
        body["strategy"] = strategy
    return body
