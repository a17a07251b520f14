"""Same spec, same bytes; a new model version is a small diff in one file."""

from __future__ import annotations

import difflib

from render_helpers import DIGEST_V2, full_spec, minimal_spec, spec_fields

from renderer import DeploymentSpec, render_base, render_model


def test_rendering_twice_gives_identical_bytes():
    assert render_model(full_spec()) == render_model(full_spec())
    assert render_base() == render_base()


def test_env_order_in_the_request_does_not_change_the_bytes():
    forwards = {"A_FIRST": "1", "B_SECOND": "2", "C_THIRD": "3"}
    backwards = dict(reversed(list(forwards.items())))
    assert list(forwards) != list(backwards)
    assert render_model(minimal_spec(env=forwards)) == render_model(minimal_spec(env=backwards))


def test_output_is_plain_deterministic_text():
    for path, content in {**render_base(), **render_model(full_spec())}.items():
        text = content.decode("utf-8")
        assert text.endswith("\n") and not text.endswith("\n\n"), path
        assert "\t" not in text and "\r" not in text, path
        for line in text.splitlines():
            indent = len(line) - len(line.lstrip(" "))
            assert indent % 2 == 0, f"{path}: odd indentation in {line!r}"


def _changed_lines(before: dict[str, bytes], after: dict[str, bytes]) -> dict[str, list[str]]:
    assert sorted(before) == sorted(after)
    changes = {}
    for path in before:
        diff = [
            line
            for line in difflib.unified_diff(
                before[path].decode().splitlines(), after[path].decode().splitlines(), lineterm="", n=0
            )
            if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
        ]
        if diff:
            changes[path] = diff
    return changes


def test_version_bump_touches_only_the_kustomization_and_few_lines():
    for build in (minimal_spec, full_spec):
        current = build()
        bumped = DeploymentSpec(
            **{
                **current.model_dump(),
                "model_version": str(int(current.model_version) + 1),
                "image": current.image_repository
                + "@"
                + ("sha256:" + "9" * 64 if current.image_digest == DIGEST_V2 else DIGEST_V2),
                "run_id": "ffffffffffffffffffffffffffffffff",
                "model_uri": f"models:/{current.model_name}/{int(current.model_version) + 1}",
                "deployment_id": "dep-next",
            }
        )
        changes = _changed_lines(render_model(current), render_model(bumped))
        kustomization = f"apps/{current.namespace}/{current.model_name}/kustomization.yaml"
        assert list(changes) == [kustomization]
        removed = [line for line in changes[kustomization] if line.startswith("-")]
        added = [line for line in changes[kustomization] if line.startswith("+")]
        # digest, version label, MODEL_VERSION, run id, model URI, deployment id
        assert len(removed) == len(added) == 6, changes


def test_scaling_change_stays_out_of_the_kustomization():
    before = render_model(minimal_spec())
    after = render_model(minimal_spec(replicas=3, memory_limit="2Gi", env={"LOG_LEVEL": "debug"}))
    changes = _changed_lines(before, after)
    assert list(changes) == ["apps/mlops-models/iris/deployment-patch.yaml"]


def test_requests_default_to_half_the_limits():
    spec = DeploymentSpec(**spec_fields(cpu_limit="1500m", memory_limit="1G"))
    assert (spec.cpu_request, spec.memory_request) == ("750m", "500M")
    defaults = DeploymentSpec(**spec_fields())
    assert (defaults.cpu_limit, defaults.cpu_request, defaults.memory_limit, defaults.memory_request) == (
        "1",
        "500m",
        "1Gi",
        "512Mi",
    )
