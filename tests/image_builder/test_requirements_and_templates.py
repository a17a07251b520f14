"""Pure parts of the builder: the runtime's requirement list, its cache key, and the Dockerfile templates."""

from __future__ import annotations

import jinja2
import pytest

from control_api.adapters.image_builder import context
from control_api.adapters.image_builder.layers import docker_name, runtime_key
from control_api.adapters.image_builder.requirements import runtime_requirements
from control_api.errors import ImageBuildFailed

SERVER = "fastapi==0.165.0\nPyYAML==6.0.3\n# comment\n"


def test_mlflow_becomes_skinny_and_names_are_canonical():
    result = runtime_requirements("mlflow==3.17.2\nScikit_Learn==1.9.1  # pinned\n\n", SERVER, "3.17.2")
    assert result.lines == ["fastapi==0.165.0", "mlflow-skinny==3.17.2", "pyyaml==6.0.3", "scikit-learn==1.9.1"]


def test_the_models_pin_wins_over_the_servers():
    result = runtime_requirements("pyyaml==6.0.1\n", SERVER, None)
    assert "pyyaml==6.0.1" in result.lines and "pyyaml==6.0.3" not in result.lines


def test_mlflow_skinny_is_added_at_the_saving_version_when_missing():
    assert "mlflow-skinny==3.1.0" in runtime_requirements("numpy==2.0.0\n", SERVER, "3.1.0").lines


def test_option_lines_are_reported_not_installed():
    result = runtime_requirements("--index-url https://example.invalid/simple\n-r more.txt\nnumpy\n", SERVER, None)
    assert result.skipped == ["--index-url https://example.invalid/simple", "-r more.txt"]
    assert "numpy" in result.lines


def test_unparseable_requirement_is_a_build_failure():
    with pytest.raises(ImageBuildFailed) as failure:
        runtime_requirements("numpy==1.0 and more\n", SERVER, None)
    assert failure.value.code == "invalid_requirements"


def test_order_and_spelling_do_not_change_the_runtime_key():
    one = runtime_requirements("numpy==2.0.0\nPandas==2.2.0\n", SERVER, "3.1.0")
    two = runtime_requirements("pandas==2.2.0\n# same\nnumpy==2.0.0\n", SERVER, "3.1.0")
    assert runtime_key("sha256:b", "3.11.2", one.lines, "s") == runtime_key("sha256:b", "3.11.2", two.lines, "s")


@pytest.mark.parametrize("changed", ["base", "python", "requirements", "server"])
def test_every_input_of_the_runtime_key_changes_it(changed):
    inputs = {"base": "sha256:b", "python": "3.11.2", "requirements": ["numpy==2.0.0"], "server": "s"}
    before = runtime_key(*inputs.values())
    inputs[changed] = ["numpy==2.0.1"] if changed == "requirements" else inputs[changed] + "x"
    assert runtime_key(*inputs.values()) != before


def test_server_fingerprint_covers_the_server_sources():
    names = set(context.server_files())
    assert {"model_server/app.py", "model_server/requirements.txt", "model_server/__main__.py"} <= names
    assert not any("__pycache__" in name for name in names)


@pytest.mark.parametrize("value", ["plain", 'with "quotes"', "dollar $HOME and ${X}", "back\\slash", "trailing\\"])
def test_dockerfile_string_escapes(value):
    quoted = context.dockerfile_string(value)
    assert quoted.startswith('"') and quoted.endswith('"')
    # Undo the Dockerfile escapes the way the builder's word parser does: backslash takes the next char.
    inner, out, i = quoted[1:-1], [], 0
    while i < len(inner):
        if inner[i] == "\\":
            i += 1
        elif inner[i] == '"':
            pytest.fail(f"unescaped quote in {quoted}")
        out.append(inner[i])
        i += 1
    assert "".join(out) == value


def test_line_breaks_cannot_start_a_new_instruction():
    rendered = context.render_dockerfile(
        context.MODEL_TEMPLATE, runtime_image="r:1", labels={"io.mlops.model.name": "x\nRUN rm -rf /"}
    ).decode()
    assert not any(line.startswith("RUN") for line in rendered.splitlines())


def test_templates_refuse_missing_values():
    with pytest.raises(jinja2.UndefinedError):
        context.render_dockerfile(context.RUNTIME_TEMPLATE, base_image="python:3.11-slim")


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_runtime_template_renders_for_both_installers(installer):
    text = context.render_dockerfile(
        context.RUNTIME_TEMPLATE,
        base_image="python:3.11-slim",
        ca_bundle="/etc/ssl/certs/ca-certificates.crt",
        index_url=None,
        installer=installer,
        uid=10001,
        runtime_key="k",
        server_version="1",
    ).decode()
    assert ("COPY uv /usr/local/bin/uv" in text) == (installer == "uv")
    assert "USER 10001:10001" in text and "EXPOSE 8080" in text
    assert "PIP_INDEX_URL" not in text


def test_docker_names_are_valid_repository_parts():
    assert docker_name('Iris "demo" $HOME', "m") == "iris-demo-home"
    assert docker_name("...", "fallback") == "fallback"
