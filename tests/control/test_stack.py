"""The stack's registries and its start-up validation, without HTTP.

A throwaway target kind and a throwaway image builder kind are registered here, in the test alone:
the service's pipelines, status checks, target and settings rules pick them up from their registry
entry without any other module knowing their names.
"""

from __future__ import annotations

from typing import Any

import pytest

from control_api.api.routes.status import component_checks
from control_api.app import create_app
from control_api.cli import main as control_main
from control_api.pipeline.factory import build_pipelines
from control_api.pipeline.orchestrator import Pipeline
from control_api.pipeline.pipelines import DEPLOY
from control_api.pipeline.step import StepContext, StepResult
from control_api.services import Services
from control_api.settings import BuildSettings, Settings, TargetSettings
from control_api.stack.builders import BUILDER_KINDS, BuilderKind
from control_api.stack.targets import TARGET_KINDS, TargetKind
from control_api.stack.validation import StackMisconfigured, stack_problems, validate_stack


class Noop:
    name = "noop"
    status_label = "building"
    max_attempts = 1

    def run(self, ctx: StepContext) -> StepResult:
        return StepResult({}, "nothing to do")


class ThrowawayTarget:
    kind = "throwaway"


class ThrowawayBuilder:
    def ping(self) -> None:
        return None


def with_target_kind(settings: Settings, kind: str) -> Settings:
    """Settings of a kind the settings model does not list (it validates ``target.kind`` by name)."""
    return settings.model_copy(
        update={"target": TargetSettings.model_construct(**{**settings.target.__dict__, "kind": kind})}
    )


@pytest.fixture
def throwaway_kind(monkeypatch) -> TargetKind:
    noop = Noop()
    kind = TargetKind(
        name="throwaway",
        settings_problems=lambda settings: (
            [] if settings.api.max_wait_seconds > 1 else ["throwaway needs api.max_wait_seconds above 1"]
        ),
        checks=lambda services: {"throwaway-backend": lambda: {"detail": "reachable"}},
        pipelines=lambda services: {DEPLOY: Pipeline(DEPLOY, (noop,), "registered")},
        make_target=lambda services: ThrowawayTarget(),  # type: ignore[arg-type,return-value]
    )
    monkeypatch.setitem(TARGET_KINDS, kind.name, kind)
    return kind


def test_a_registered_target_kind_supplies_pipelines_checks_target_and_rules(tmp_path, throwaway_kind):
    settings = with_target_kind(Settings(data_dir=tmp_path / "data"), "throwaway")
    services = Services(settings)
    try:
        pipelines = build_pipelines(services)
        assert list(pipelines) == [DEPLOY]
        assert pipelines[DEPLOY].step_names == ["noop"]
        checks = component_checks(services)
        assert "throwaway-backend" in checks and checks["throwaway-backend"]() == {"detail": "reachable"}
        assert not {"docker", "registry", "git", "argocd"} & set(checks)  # only what the kind asked for
        assert isinstance(services.target, ThrowawayTarget)
        assert stack_problems(settings) == []
        slow = settings.model_copy(update={"api": settings.api.model_copy(update={"max_wait_seconds": 0.5})})
        assert stack_problems(slow) == ["throwaway needs api.max_wait_seconds above 1"]
    finally:
        services.close()


def test_a_registered_builder_kind_builds_the_images_and_names_the_status_check(tmp_path, monkeypatch):
    builder = ThrowawayBuilder()
    kind = BuilderKind(
        name="throwaway-builder",
        check_name="throwaway-builder",
        settings_problems=lambda settings: [],
        make=lambda settings: builder,  # type: ignore[arg-type,return-value]
    )
    monkeypatch.setitem(BUILDER_KINDS, kind.name, kind)
    settings = Settings(data_dir=tmp_path / "data", target={"kind": "local"})
    settings = settings.model_copy(
        update={"build": BuildSettings.model_construct(**{**settings.build.__dict__, "backend": "throwaway-builder"})}
    )
    services = Services(settings)
    try:
        assert services.image_builder is builder
        checks = component_checks(services)
        assert "throwaway-builder" in checks and "docker" not in checks
    finally:
        services.close()


@pytest.mark.parametrize(
    ("kind", "expected_checks"),
    [
        ("none", set()),
        ("local", {"docker", "registry", "git"}),
        ("argocd", {"docker", "registry", "git", "argocd", "kubernetes"}),
    ],
)
def test_each_shipped_target_kind_adds_its_own_checks(tmp_path, kind, expected_checks):
    extra = {"argocd": {"server_url": "https://127.0.0.1:1", "token": "t"}} if kind == "argocd" else {}
    services = Services(Settings(data_dir=tmp_path / "data", target={"kind": kind}, **extra))
    try:
        checks = set(component_checks(services))
        assert checks == {"mlflow", "journal", "training_sandbox"} | expected_checks
    finally:
        services.close()


def test_the_none_kind_has_no_target_and_only_a_deploy_pipeline(tmp_path):
    services = Services(Settings(data_dir=tmp_path / "data", target={"kind": "none"}))
    try:
        assert services.target is None
        pipelines = build_pipelines(services)
        assert list(pipelines) == [DEPLOY]
        assert pipelines[DEPLOY].step_names == ["train", "register"]
        assert pipelines[DEPLOY].final_status == "registered"
    finally:
        services.close()


# ---- start-up validation ---------------------------------------------------------------------------


def settings_with(tmp_path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", **values)


@pytest.mark.parametrize("kind", ["none", "local"])
def test_the_shipped_defaults_pass(tmp_path, kind):
    settings = settings_with(tmp_path, target={"kind": kind})
    assert stack_problems(settings) == []
    validate_stack(settings)
    create_app(settings)


def test_the_default_target_is_local_and_passes(tmp_path):
    settings = settings_with(tmp_path)
    assert settings.target.kind == "local"
    assert stack_problems(settings) == []


def test_argocd_with_its_required_settings_passes(tmp_path):
    settings = settings_with(
        tmp_path, target={"kind": "argocd"}, argocd={"server_url": "https://argocd.example", "token": "t"}
    )
    assert stack_problems(settings) == []
    session = settings_with(
        tmp_path,
        target={"kind": "argocd"},
        argocd={"server_url": "https://argocd.example", "username": "admin", "password": "p"},
    )
    assert stack_problems(session) == []


def test_review_mode_without_a_forge_refuses_start_up(tmp_path):
    settings = settings_with(tmp_path, git={"review_mode": True})
    with pytest.raises(StackMisconfigured) as refused:
        create_app(settings)
    [problem] = refused.value.problems
    assert "git.review_mode" in problem and "forge.kind" in problem
    assert "MLOPS_GIT__REVIEW_MODE" in problem and "MLOPS_FORGE__KIND" in problem


def test_review_mode_with_a_forge_passes(tmp_path):
    settings = settings_with(
        tmp_path, git={"review_mode": True}, forge={"kind": "github", "repository": "o/r", "token": "t"}
    )
    assert stack_problems(settings) == []


def test_review_mode_does_not_concern_a_target_that_commits_nothing(tmp_path):
    assert stack_problems(settings_with(tmp_path, target={"kind": "none"}, git={"review_mode": True})) == []


def test_argocd_without_a_server_or_credentials_refuses_start_up(tmp_path):
    settings = settings_with(tmp_path, target={"kind": "argocd"})
    with pytest.raises(StackMisconfigured) as refused:
        validate_stack(settings)
    problems = refused.value.problems
    assert len(problems) == 2, problems
    assert "argocd.server_url" in problems[0] and "MLOPS_ARGOCD__SERVER_URL" in problems[0]
    assert "argocd.token" in problems[1] and "argocd.password" in problems[1]
    only_user = settings_with(
        tmp_path, target={"kind": "argocd"}, argocd={"server_url": "https://argocd.example", "username": "admin"}
    )
    [problem] = stack_problems(only_user)
    assert "argocd.username with argocd.password" in problem


def test_automated_sync_with_a_branch_that_reads_as_a_sha_refuses_start_up(tmp_path):
    argocd = {"server_url": "https://argocd.example", "token": "t", "automated_sync": True}
    pinned = settings_with(tmp_path, target={"kind": "argocd"}, argocd=argocd, git={"branch": "3f2a9c1"})
    [problem] = stack_problems(pinned)
    assert "argocd.automated_sync" in problem and "git.branch" in problem and "'3f2a9c1'" in problem
    # The same branch under manual sync, and automated sync on an ordinary branch, are fine.
    manual = settings_with(
        tmp_path, target={"kind": "argocd"}, argocd={**argocd, "automated_sync": False}, git={"branch": "3f2a9c1"}
    )
    assert stack_problems(manual) == []
    assert stack_problems(settings_with(tmp_path, target={"kind": "argocd"}, argocd=argocd)) == []


def test_serve_refuses_to_start_and_names_the_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLOPS_GIT__REVIEW_MODE", "true")
    monkeypatch.setenv("MLOPS_TARGET__KIND", "argocd")
    assert control_main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err
    for name in ("git.review_mode", "forge.kind", "argocd.server_url", "argocd.token"):
        assert name in err, err


def test_no_step_or_target_module_reaches_for_the_services_container():
    """Steps and targets are handed the adapters they use; only the wiring knows the container."""
    import ast
    from pathlib import Path

    import control_api

    root = Path(control_api.__file__).parent
    offenders = []
    for path in [*root.glob("pipeline/steps/*.py"), *root.glob("targets/*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            imported = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            names = {alias.name for alias in getattr(node, "names", [])}
            if "control_api.services" in imported or "Services" in names:
                offenders.append(path.relative_to(root).as_posix())
            if isinstance(node, ast.Attribute) and node.attr == "services":
                offenders.append(path.relative_to(root).as_posix())
    assert offenders == []
