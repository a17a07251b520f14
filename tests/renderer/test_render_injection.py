"""YAML injection through any free-text field cannot add objects, keys or documents.

Two layers are tested separately: validation refuses multi-line values up front, and the templates'
quoting holds even when validation is bypassed (``model_construct``), so either alone is enough.
"""

from __future__ import annotations

import pytest
from render_helpers import by_kind, load_documents, minimal_spec, spec_fields

from renderer import (
    ApplicationSpec,
    DeploymentSpec,
    RenderError,
    SecretRef,
    application_manifest,
    render_application,
    render_model,
)

ONE_LINE_PAYLOADS = [
    'x", "kind": "Secret',
    "x' ; kind: Secret",
    "--- kind: Secret",
    "... end",
    "key: value # trailing comment",
    "&anchor *alias !!python/object/apply:os.system ['id']",
    "{{ spec.image }} {% raw %}",
    "- list item",
    "%YAML 1.1",
    "? complex key",
    "| block > folded",
    'back\\slash \\n not a newline \\"',
    "unicode é 日本 🚀",
    "null",
    "true",
    "0x1F",
]
MULTI_LINE_PAYLOADS = [
    'x"\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: pwned\n',
    "x\n  injected: true",
    "x\r\nkind: Secret",
    "x\u2028---\u2028kind: Secret",
    "x\u0085kind: Secret",
    "x\u2029metadata: {}",
]
# go-yaml (inside kustomize) refuses these outright, so they are only checked up to our own output.
CONTROL_CHARACTER_PAYLOADS = ["tab\there\x1bescape\x7fdel\x00nul"]
ANNOTATION_FIELDS = {
    "run_id": "mlops.io/run-id",
    "model_uri": "mlops.io/model-uri",
    "deployment_id": "mlops.io/deployment-id",
}


def _assert_only_expected_objects(documents, name="iris"):
    objects = by_kind(documents)
    assert sorted(objects) == ["Deployment", "Service"]
    for document in documents:
        assert document["metadata"]["name"] == name
        assert document["metadata"]["namespace"] == "mlops-models"
        assert sorted(document["metadata"]["annotations"]) == sorted(ANNOTATION_FIELDS.values())
    return objects


def _env_of(objects):
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item for item in container["env"]}


@pytest.mark.kustomize
def test_one_line_payloads_in_annotations_round_trip(build_models):
    specs = {
        (field, index): minimal_spec(model_name=f"iris-{field.replace('_', '-')}-{index}", **{field: payload})
        for field in ANNOTATION_FIELDS
        for index, payload in enumerate(ONE_LINE_PAYLOADS)
    }
    built = build_models(list(specs.values()))
    assert len(built) == len(specs)
    for (field, index), spec in specs.items():
        objects = _assert_only_expected_objects(built[(spec.namespace, spec.model_name)], spec.model_name)
        for document in objects.values():
            assert document["metadata"]["annotations"][ANNOTATION_FIELDS[field]] == ONE_LINE_PAYLOADS[index]


@pytest.mark.kustomize
def test_one_line_payloads_in_env_values_round_trip(build_model):
    env = {
        f"VALUE_{index}": payload
        for index, payload in enumerate(ONE_LINE_PAYLOADS)
        if not payload.startswith(("---", "..."))
    }
    objects = _assert_only_expected_objects(build_model(minimal_spec(env=env)))
    rendered_env = _env_of(objects)
    for key, payload in env.items():
        assert rendered_env[key] == {"name": key, "value": payload}


@pytest.mark.parametrize("field", [*sorted(ANNOTATION_FIELDS), "model_version", "managed_by"])
@pytest.mark.parametrize("payload", MULTI_LINE_PAYLOADS + CONTROL_CHARACTER_PAYLOADS)
def test_validation_refuses_multi_line_text(field, payload):
    with pytest.raises(RenderError) as caught:
        DeploymentSpec.validated(**spec_fields(**{field: payload}))
    assert caught.value.field == field


@pytest.mark.parametrize("payload", MULTI_LINE_PAYLOADS + CONTROL_CHARACTER_PAYLOADS)
def test_validation_refuses_multi_line_env_values(payload):
    with pytest.raises(RenderError) as caught:
        DeploymentSpec.validated(**spec_fields(env={"SAFE_NAME": payload}))
    assert caught.value.field == "env"


def test_validation_refuses_document_markers_in_env_values():
    for value in ("---", "--- kind: Secret", "...", "... end"):
        with pytest.raises(RenderError, match="document marker"):
            DeploymentSpec.validated(**spec_fields(env={"SAFE_NAME": value}))


def _unchecked_spec(index: int, payload: str) -> DeploymentSpec:
    valid = minimal_spec(model_name=f"iris-{index}", env={"PLAIN": "1"})
    return DeploymentSpec.model_construct(
        **{
            **dict(valid),
            "run_id": payload,
            "model_uri": payload,
            "deployment_id": payload,
            "env": {"PLAIN": payload, 'EVIL"\nKEY': payload},
            "secret_env": {"FROM_SECRET": SecretRef.model_construct(name=payload, key=payload)},
        }
    )


def test_rendered_files_keep_unchecked_values_exactly():
    for index, payload in enumerate(MULTI_LINE_PAYLOADS + CONTROL_CHARACTER_PAYLOADS):
        files = render_model(_unchecked_spec(index, payload))
        directory = f"apps/mlops-models/iris-{index}"
        (kustomization,) = load_documents(files[f"{directory}/kustomization.yaml"].decode())
        assert kustomization["commonAnnotations"] == {annotation: payload for annotation in ANNOTATION_FIELDS.values()}
        assert kustomization["namespace"] == "mlops-models"
        assert len(kustomization["patches"]) == 3
        (patch,) = load_documents(files[f"{directory}/deployment-patch.yaml"].decode())
        env = patch["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env[1:] == [
            {"name": 'EVIL"\nKEY', "value": payload},
            {"name": "PLAIN", "value": payload},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": payload, "key": payload}}},
        ]


@pytest.mark.kustomize
def test_quoting_holds_through_kustomize_when_validation_is_bypassed(build_models):
    specs = [_unchecked_spec(index, payload) for index, payload in enumerate(MULTI_LINE_PAYLOADS)]
    built = build_models(specs)
    assert sorted(built) == sorted((spec.namespace, spec.model_name) for spec in specs)
    for spec in specs:
        objects = _assert_only_expected_objects(built[(spec.namespace, spec.model_name)], spec.model_name)
        rendered_env = _env_of(objects)
        assert sorted(rendered_env) == sorted(["MODEL_NAME", "MODEL_VERSION", "PLAIN", 'EVIL"\nKEY', "FROM_SECRET"])
        assert sorted(rendered_env["FROM_SECRET"]["valueFrom"]["secretKeyRef"]) == ["key", "name"]


def _application(**overrides):
    fields = {
        "name": "mlops-models--iris",
        "repo_url": "https://git.example.com/gitops.git",
        "path": "apps/mlops-models/iris",
        "destination_namespace": "mlops-models",
        "labels": {"team": "ml"},
    }
    fields.update(overrides)
    return fields


@pytest.mark.parametrize("field", ["repo_url", "path", "target_revision", "destination_server"])
def test_application_validation_refuses_multi_line_text(field):
    with pytest.raises(RenderError) as caught:
        ApplicationSpec.validated(**_application(**{field: "main\nkind: Secret"}))
    assert caught.value.field == field


def test_application_quoting_holds_even_when_validation_is_bypassed():
    for payload in [*ONE_LINE_PAYLOADS, *MULTI_LINE_PAYLOADS, *CONTROL_CHARACTER_PAYLOADS]:
        unchecked = ApplicationSpec.model_construct(
            **{
                **dict(ApplicationSpec(**_application())),
                "repo_url": payload,
                "path": payload,
                "target_revision": payload,
                "destination_server": payload,
                "project": payload,
                "labels": {payload: payload},
            }
        )
        manifest = application_manifest(unchecked)
        assert sorted(manifest) == ["apiVersion", "kind", "metadata", "spec"]
        assert manifest["kind"] == "Application"
        assert manifest["metadata"]["labels"] == {payload: payload}
        assert manifest["spec"]["source"] == {"repoURL": payload, "path": payload, "targetRevision": payload}
        assert manifest["spec"]["destination"] == {"server": payload, "namespace": "mlops-models"}
        assert manifest["spec"]["project"] == payload
        (content,) = render_application(unchecked).values()
        assert len(load_documents(content.decode())) == 1


def test_template_output_is_parsed_back_as_one_document():
    # The renderer re-parses its output; exactly one mapping per file or it refuses.
    for path, content in render_model(minimal_spec()).items():
        assert len(load_documents(content.decode())) == 1, path
