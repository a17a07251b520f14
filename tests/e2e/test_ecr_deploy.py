"""A deploy with ``registry.kind = ecr``: moto serves the ECR control plane and its login names a
local registry with TLS and basic auth as the registry host, standing in for
``<account>.dkr.ecr.<region>.amazonaws.com``. The image must land there, under the repository ECR
created, with the credentials from the ECR login, and the deployed URL must serve it."""

from __future__ import annotations

import ssl
import uuid

import boto3
import httpx

from tests.support.control import example_request

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def test_ecr_deploy_pushes_to_the_host_the_ecr_login_names(
    make_e2e_client, ecr_naming_tls_registry, registry_url, monkeypatch
):
    endpoint, tls_registry = ecr_naming_tls_registry
    # The service checks the pushed manifest over HTTPS itself: it must trust the stand-in's CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_file))
    client = make_e2e_client(registry={"kind": "ecr", "ecr_region": "us-east-1", "ecr_endpoint_url": endpoint})
    model = f"ecr-{uuid.uuid4().hex[:6]}"
    repository = f"mlops-e2e/{model}"

    final = client.post("/mlops/deploy", json=example_request(model)).json()

    assert final["status"] == "deployed", final
    assert final["image_uri"].startswith(f"{tls_registry.host}/{repository}@sha256:"), final["image_uri"]
    digest = final["image_uri"].split("@", 1)[1]

    # ECR created the repository (immutable tags by default).
    ecr = boto3.client("ecr", region_name="us-east-1", endpoint_url=endpoint)
    described = ecr.describe_repositories(repositoryNames=[repository])["repositories"]
    assert [(r["repositoryName"], r["imageTagMutability"]) for r in described] == [(repository, "IMMUTABLE")]

    # The image is in the stand-in registry, read over verified TLS with the ECR login's credentials.
    verify = ssl.create_default_context(cafile=tls_registry.ca_file)
    auth = (tls_registry.username, tls_registry.password)
    base = f"https://{tls_registry.host}/v2/{repository}"
    assert httpx.get(f"{base}/tags/list", timeout=10, verify=verify).status_code == 401  # no anonymous access
    tags = httpx.get(f"{base}/tags/list", auth=auth, timeout=10, verify=verify).json()["tags"]
    assert len(tags) == 1, tags
    manifest = httpx.head(
        f"{base}/manifests/{tags[0]}", auth=auth, timeout=10, verify=verify, headers={"Accept": MANIFEST_TYPES}
    )
    assert manifest.headers["Docker-Content-Digest"] == digest

    # Nothing went to the registry the service would use without ECR.
    assert httpx.get(f"http://{registry_url}/v2/{repository}/tags/list", timeout=10).status_code == 404

    answer = httpx.post(
        final["inference_url"], json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == len(ROWS)
