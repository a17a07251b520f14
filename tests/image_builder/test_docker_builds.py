"""Real builds on the Docker Engine: the image serves the model's own predictions, a second version with
the same requirements reuses the runtime, and failures say why."""

from __future__ import annotations

import contextlib

import httpx
import pandas as pd
import pytest

from control_api.adapters.image_builder.docker_engine import DockerImageBuilder
from control_api.errors import ImageBuildFailed, ServiceUnavailable
from control_api.settings import BuildSettings
from tests.support.image_builds import model_bundle, wait_answers
from tests.support.ports import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.3, 3.3, 6.0, 2.5]]
# Quotes, a dollar sign and a backslash: a label must read back verbatim, not expanded or cut.
AWKWARD_NAME = 'Iris "demo" $HOME\\x'


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from tests.support.sample_models import log_iris_model

    workdir = tmp_path_factory.mktemp("image-builder-models")
    return {
        "logistic": log_iris_model(workdir, "logistic", "iris-image"),
        "forest": log_iris_model(workdir, "forest", "iris-image-forest"),
    }


@pytest.fixture
def builder(base_image):
    return DockerImageBuilder(BuildSettings(base_image=base_image))


@pytest.fixture
def cleanup(docker_client):
    containers, images = [], []
    yield containers, images
    for container in containers:
        with contextlib.suppress(Exception):
            container.remove(force=True)
    for image_id in images:
        with contextlib.suppress(Exception):
            docker_client.images.remove(image_id, force=True)


def test_image_serves_pyfunc_predictions_and_a_new_version_reuses_the_runtime(
    builder, model_dirs, docker_client, cleanup
):
    import mlflow.pyfunc

    containers, images = cleanup
    lines: list[str] = []
    first = builder.build(model_bundle(model_dirs["logistic"], AWKWARD_NAME, "1"), lines.append)
    images.append(first.image_id)
    assert first.reference.startswith("mlops/iris-demo-home-x:1-")
    assert any("runtime image" in line and ("reused" in line or "building" in line) for line in lines)
    assert first.log == lines

    image = docker_client.images.get(first.image_id)
    labels = image.labels
    assert labels["io.mlops.model.name"] == AWKWARD_NAME
    assert labels["org.opencontainers.image.title"] == AWKWARD_NAME
    assert labels["io.mlops.model.version"] == "1"
    assert labels["io.mlops.model.run-id"] == "run-1"
    assert labels["io.mlops.model.source"] == f"models:/{AWKWARD_NAME}/1"
    assert labels["io.mlops.model.deployment-id"] == "dep-1"
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert "8080/tcp" in image.attrs["Config"]["ExposedPorts"]

    port = free_port()
    container = docker_client.containers.run(first.reference, detach=True, ports={"8080/tcp": ("127.0.0.1", port)})
    containers.append(container)
    base_url = f"http://127.0.0.1:{port}"
    wait_answers(f"{base_url}/ready", container)

    expected = (
        mlflow.pyfunc.load_model(str(model_dirs["logistic"])).predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()
    )
    answer = httpx.post(f"{base_url}/predict", json={"inputs": ROWS}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": expected, "model_name": AWKWARD_NAME, "model_version": "1"}
    assert answer.headers["x-request-id"]
    invocations = httpx.post(
        f"{base_url}/invocations", json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, timeout=10
    )
    assert invocations.json() == {"predictions": expected}
    refused = httpx.post(f"{base_url}/predict", json={"inputs": [[1, 2]]}, timeout=10)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_shape"
    metadata = httpx.get(f"{base_url}/metadata", timeout=10).json()
    assert (metadata["run_id"], metadata["mlflow_uri"], metadata["flavor"]) == (
        "run-1",
        "http://127.0.0.1:5001",
        "sklearn",
    )

    # Version 2 (another estimator, same requirements): only the model layer is built.
    second_lines: list[str] = []
    second = builder.build(model_bundle(model_dirs["forest"], AWKWARD_NAME, "2"), second_lines.append)
    images.append(second.image_id)
    assert second.runtime_cache_hit is True
    assert second.runtime_reference == first.runtime_reference
    assert f"runtime image {first.runtime_reference} reused" in second_lines
    assert second.reference != first.reference and second.image_id != first.image_id


def test_the_same_inputs_give_the_same_tag(builder, model_dirs, cleanup):
    _, images = cleanup
    one = builder.build(model_bundle(model_dirs["logistic"], "iris-same", "7"), lambda line: None)
    images.append(one.image_id)
    again = builder.build(model_bundle(model_dirs["logistic"], "iris-same", "7"), lambda line: None)
    assert again.reference == one.reference
    assert again.runtime_cache_hit is True


def test_uninstallable_requirements_fail_with_the_build_output(builder, model_dirs, tmp_path, docker_client):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(model_dirs["logistic"], model_dir)
    # numpy exists, this version never will: the resolver fails inside the build.
    (model_dir / "requirements.txt").write_text("numpy==0.0.1\n")
    lines: list[str] = []
    with pytest.raises(ImageBuildFailed) as failure:
        builder.build(model_bundle(model_dir, "iris-broken", "1"), lines.append)
    error = failure.value
    assert error.code == "image_build_failed"
    assert "numpy" in error.message
    assert 0 < len(error.details["log_tail"]) <= 20
    assert error.details["log_tail"][-1] in lines[-3:] or error.details["log_tail"][-1] in error.message
    assert not docker_client.images.list(name="mlops/iris-broken")


def test_missing_base_image_is_a_terminal_build_error(model_dirs):
    builder = DockerImageBuilder(BuildSettings(base_image="mlops-test/no-such-base:0"))
    with pytest.raises(ImageBuildFailed) as failure:
        builder.build(model_bundle(model_dirs["logistic"], "iris-nobase", "1"), lambda line: None)
    assert failure.value.code == "base_image_missing"


def test_unreachable_engine_is_service_unavailable():
    builder = DockerImageBuilder(BuildSettings(docker_host="tcp://127.0.0.1:9"))
    with pytest.raises(ServiceUnavailable):
        builder.ping()
