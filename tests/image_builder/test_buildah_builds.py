"""Real builds with buildah (no Docker Engine in the build or the push): the image is pushed by digest
to the local registry, pulled and run by the Docker Engine (the local target's engine), and serves the
model's own predictions; a second version reuses the runtime; failures carry the build log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import httpx
import pandas as pd
import pytest

from control_api.adapters.image_builder.buildah import BuildahImageBuilder
from control_api.adapters.image_builder.docker_engine import DockerImageBuilder
from control_api.adapters.registry.buildah_push import BuildahImagePusher, _write_auth_file
from control_api.adapters.registry.oci import MANIFEST_TYPES, OciRegistry
from control_api.errors import ImageBuildFailed, ServiceUnavailable, TerminalError
from control_api.settings import BuildSettings, RegistrySettings
from control_api.stack.builders import builder_kind
from tests.support.image_builds import model_bundle, wait_answers
from tests.support.ports import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.3, 3.3, 6.0, 2.5]]
DIGEST_URI = re.compile(r"^127\.0\.0\.1:\d+/mlops-buildah-test/[0-9a-f]+/iris@sha256:[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from tests.support.sample_models import log_iris_model

    workdir = tmp_path_factory.mktemp("buildah-models")
    return {
        "logistic": log_iris_model(workdir, "logistic", "iris-buildah"),
        "forest": log_iris_model(workdir, "forest", "iris-buildah-forest"),
    }


@pytest.fixture
def build_settings(buildah_base_image) -> BuildSettings:
    return BuildSettings(backend="buildah", base_image=buildah_base_image, base_image_tls_verify=False)


@pytest.fixture
def builder(build_settings) -> BuildahImageBuilder:
    built = builder_kind(build_settings.backend).make(build_settings)
    assert isinstance(built, BuildahImageBuilder)
    return built


@pytest.fixture
def local_images():
    """Model images this test built in buildah's storage, removed afterwards (runtimes stay cached)."""
    references: list[str] = []
    yield references
    for reference in references:
        subprocess.run(["buildah", "rmi", reference], capture_output=True)


def test_buildah_image_is_pushed_by_digest_and_serves_and_the_runtime_is_reused(
    builder, build_settings, model_dirs, registry_url, docker_client, local_images
):
    import mlflow.pyfunc

    lines: list[str] = []
    first = builder.build(model_bundle(model_dirs["logistic"], "iris", "1", "dep-buildah"), lines.append)
    local_images.append(first.reference)
    assert first.image_id.startswith("sha256:") and len(first.image_id) == 71
    assert first.log == lines
    assert any(line.startswith(f"runtime image {first.runtime_reference}") for line in lines)
    assert not docker_client.images.list(name=first.reference.split(":")[0]), "built outside the Docker Engine"

    pusher = builder_kind(build_settings.backend).make_pusher(build_settings)
    assert isinstance(pusher, BuildahImagePusher)
    registry = OciRegistry(RegistrySettings(url=registry_url, insecure=True), pusher=pusher)
    repository = f"mlops-buildah-test/{uuid.uuid4().hex[:8]}/iris"
    push_log: list[str] = []
    pushed = registry.push(first.reference, repository, "v1-test", push_log.append)
    assert DIGEST_URI.match(pushed.uri), pushed.uri
    assert pushed.tag == "v1-test" and pushed.repository == f"{registry_url}/{repository}"
    head = httpx.head(
        f"http://{registry_url}/v2/{repository}/manifests/v1-test", headers={"Accept": MANIFEST_TYPES}, timeout=10
    )
    assert head.headers["Docker-Content-Digest"] == pushed.digest
    # The same kind of manifest the Docker Engine pushes, so nothing downstream tells the backends apart.
    assert head.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert push_log[-1] == f"pushed {registry_url}/{repository}:v1-test as {pushed.digest}"
    # The same content pushed again is a success with the same digest (a retried push step).
    assert registry.push(first.reference, repository, "v1-test", lambda line: None).digest == pushed.digest

    image = docker_client.images.pull(pushed.uri)
    try:
        assert image.id == first.image_id, "the registry holds the image buildah built"
        assert image.labels["io.mlops.model.name"] == "iris"
        assert image.labels["io.mlops.model.deployment-id"] == "dep-buildah-1"
        assert image.attrs["Config"]["User"] == "10001:10001"
        port = free_port()
        container = docker_client.containers.run(
            pushed.uri, detach=True, ports={"8080/tcp": ("127.0.0.1", port)}, labels={"mlops-test": "buildah"}
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_answers(f"{base_url}/health", container)
            wait_answers(f"{base_url}/ready", container)
            expected = (
                mlflow.pyfunc.load_model(str(model_dirs["logistic"]))
                .predict(pd.DataFrame(ROWS, columns=COLUMNS))
                .tolist()
            )
            answer = httpx.post(f"{base_url}/predict", json={"inputs": ROWS}, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"predictions": expected, "model_name": "iris", "model_version": "1"}
        finally:
            container.remove(force=True)
    finally:
        docker_client.images.remove(image.id, force=True)

    # Version 2 (another estimator, same requirements): only the model layer is built.
    second_lines: list[str] = []
    second = builder.build(model_bundle(model_dirs["forest"], "iris", "2", "dep-buildah"), second_lines.append)
    local_images.append(second.reference)
    assert second.runtime_cache_hit is True
    assert second.runtime_reference == first.runtime_reference
    assert f"runtime image {first.runtime_reference} reused" in second_lines
    assert second.reference != first.reference and second.image_id != first.image_id


def test_both_backends_key_the_runtime_alike(build_settings, base_image):
    """The runtime key hashes the base image's ID: the registry copy buildah pulls is the engine's image."""
    buildah = BuildahImageBuilder(build_settings)
    docker = DockerImageBuilder(BuildSettings(base_image=base_image))
    buildah_base = buildah.image_id(build_settings.base_image) or _pull_base(buildah)
    assert buildah_base is not None and buildah_base == docker.image_id(base_image)
    assert buildah.python_version(buildah_base) == docker.python_version(buildah_base)


def _pull_base(builder: BuildahImageBuilder) -> str | None:
    builder.ensure_base_image(lambda line: None)
    return builder.image_id(builder.settings.base_image)


def test_uninstallable_requirements_fail_with_the_build_log(builder, model_dirs, tmp_path):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(model_dirs["logistic"], model_dir)
    # numpy exists, this version never will: the resolver fails inside the build.
    (model_dir / "requirements.txt").write_text("numpy==0.0.1\n")
    lines: list[str] = []
    with pytest.raises(ImageBuildFailed) as failure:
        builder.build(model_bundle(model_dir, "iris-broken", "1", "dep-buildah"), lines.append)
    error = failure.value
    assert error.code == "image_build_failed"
    assert "numpy" in error.message
    assert 0 < len(error.details["log_tail"]) <= 20
    assert error.details["log_tail"] == [line for line in lines if line in error.details["log_tail"]][-20:]
    assert any("numpy" in line for line in error.details["log_tail"])
    stored = subprocess.run(["buildah", "images", "--format", "{{.Name}}"], capture_output=True, text=True, check=True)
    assert "mlops/iris-broken" not in stored.stdout


def test_a_base_image_no_registry_has_is_a_terminal_build_error(registry_url, model_dirs):
    settings = BuildSettings(
        backend="buildah", base_image=f"{registry_url}/mlops-test/no-such-base:0", base_image_tls_verify=False
    )
    with pytest.raises(ImageBuildFailed) as failure:
        BuildahImageBuilder(settings).build(
            model_bundle(model_dirs["logistic"], "iris-nobase", "1", "dep-buildah"), lambda line: None
        )
    assert failure.value.code == "base_image_missing"
    assert "no-such-base" in failure.value.message


def test_pushing_an_image_buildah_does_not_hold_is_terminal(build_settings, registry_url):
    registry = OciRegistry(RegistrySettings(url=registry_url), pusher=BuildahImagePusher(build_settings))
    with pytest.raises(TerminalError) as failure:
        registry.push("mlops/never-built:0", "mlops-buildah-test/none", "v0", lambda line: None)
    assert failure.value.code == "image_missing"


def test_a_missing_buildah_is_service_unavailable_naming_the_fix():
    builder = BuildahImageBuilder(BuildSettings(backend="buildah", buildah_executable="/nonexistent/buildah"))
    with pytest.raises(ServiceUnavailable) as failure:
        builder.ping()
    assert failure.value.code == "buildah_unavailable"
    assert "MLOPS_BUILD__BACKEND=docker" in str(failure.value)


def test_registry_credentials_reach_buildah_in_a_private_auth_file(tmp_path):
    path = _write_auth_file(tmp_path, "registry.example:5000/team/model:v1", ("robot", "s3cret:pass"))
    assert os.stat(path).st_mode & 0o777 == 0o600
    auths = json.loads(path.read_text())["auths"]
    assert list(auths) == ["registry.example:5000"]
    import base64

    assert base64.b64decode(auths["registry.example:5000"]["auth"]).decode() == "robot:s3cret:pass"


def test_the_docker_backend_keeps_the_engine_push():
    settings = BuildSettings()
    assert isinstance(builder_kind(settings.backend).make(settings), DockerImageBuilder)
    assert builder_kind(settings.backend).make_pusher(settings) is None
