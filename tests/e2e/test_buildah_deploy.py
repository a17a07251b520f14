"""One deploy through the whole pipeline with the buildah build backend on the local target: the image
is built and pushed without the Docker Engine, which then only runs it, and it serves a prediction."""

from __future__ import annotations

import httpx
import pytest

from tests.support.control import example_request, pyfunc_predictions
from tests.support.iris import COLUMNS
from tests.support.iris import SAMPLE_ROWS as ROWS

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_a_buildah_built_image_deploys_and_predicts(make_e2e_client, buildah_base_image, registry_url):
    client = make_e2e_client(
        build={"backend": "buildah", "base_image": buildah_base_image, "base_image_tls_verify": False}
    )
    status = client.get("/mlops/status").json()
    assert status["components"]["buildah"]["status"] == "healthy", status
    assert "docker" not in status["components"]

    deployed = client.post("/mlops/deploy", json=example_request("iris-buildah-e2e")).json()
    assert deployed["status"] == "deployed", deployed
    assert deployed["image_uri"].startswith(f"{registry_url}/mlops-e2e/iris-buildah-e2e@sha256:")
    build = next(step for step in deployed["steps"] if step["name"] == "build")
    assert build["status"] == "succeeded" and "runtime layer mlops/runtime:" in build["message"], build

    health = httpx.get(deployed["endpoints"]["health"], timeout=10)
    assert health.status_code == 200 and health.json()["model"]["version"] == "1"
    predicted = httpx.post(
        deployed["inference_url"], json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, timeout=10
    )
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"] == pyfunc_predictions(client, "iris-buildah-e2e", "1")
