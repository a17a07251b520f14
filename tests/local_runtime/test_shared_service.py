"""One Service selecting the pods of two Deployments (stable and canary) on the real Docker Engine.

Both Deployments' replicas join the Service's address and one SO_REUSEPORT group, so connections split
by replica count; each Deployment is still applied, read, listed and deleted on its own.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import yaml

from control_api.adapters.local_runtime.base import WorkloadSpec
from control_api.adapters.local_runtime.docker_runtime import (
    L_GRACE,
    L_NAME,
    L_OWNER,
    L_SERVICE,
    DockerLocalRuntime,
    spec_hash,
)
from control_api.adapters.local_runtime.manifests import pair_workloads
from control_api.errors import SyncFailed
from control_api.settings import Settings
from control_api.targets.base import app_ref
from control_api.targets.local import LocalTarget
from tests.support.local_runtime import (
    BASE_MANIFESTS,
    TEST_LOOPBACK_FIRST,
    all_containers,
    base_manifest_spec,
    network_holder,
    spec_for,
    workload_containers,
)

STABLE, CANARY = "iris", "iris-canary"


def stable_spec(image: str, namespace: str, **overrides) -> WorkloadSpec:
    return spec_for(image, namespace, name=STABLE, env={"VERSION": "stable"}, **overrides)


def canary_spec(image: str, namespace: str, **overrides) -> WorkloadSpec:
    labels = {"app.kubernetes.io/name": STABLE, "mlops.io/track": "canary"}
    return spec_for(
        image, namespace, name=CANARY, service_name=STABLE, env={"VERSION": "canary"}, labels=labels, **overrides
    )


def versions_over_fresh_connections(url: str, count: int) -> Counter[str]:
    """Which Deployment answered each of ``count`` requests, each on a new connection (httpx.get
    opens one per call), so the kernel picks a listening socket for every one."""
    return Counter(httpx.get(url + "/health", timeout=5).json()["version"] for _ in range(count))


def keep_asking(url: str, failures: list[str], versions: list[str], done: threading.Event) -> list[threading.Thread]:
    """Askers in parallel, so that requests are in flight on every replica when one leaves."""

    def ask() -> None:
        while not done.is_set():
            try:
                response = httpx.get(url + "/health", timeout=5)  # a fresh connection each time
                if response.status_code == 200:
                    versions.append(response.json()["version"])
                else:
                    failures.append(f"{response.status_code} {response.text[:100]}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    return threads


def test_a_service_over_two_deployments_splits_connections_by_replica_count(
    runtime, test_server_image, namespace, docker_client
):
    """1 stable and 3 canary replicas: the canary answers 3/4 of 400 fresh connections. The binomial
    spread of that share is sqrt(0.75 * 0.25 / 400) = 0.022, so the tolerance of +-0.08 is 3.7 standard
    deviations (a correct runtime fails it about once in 5000 runs); one Deployment per address (the
    shape before) would give 0 or 1. The canary is applied first: it starts the Service's address."""
    canary = runtime.apply(canary_spec(test_server_image, namespace, replicas=3), ready_timeout=90)
    stable = runtime.apply(stable_spec(test_server_image, namespace, replicas=1), ready_timeout=90)

    assert (canary.address, canary.port) == (stable.address, stable.port)
    assert (canary.name, canary.replicas, canary.ready_replicas, len(canary.container_ids)) == (CANARY, 3, 3, 3)
    assert (stable.name, stable.replicas, stable.ready_replicas, len(stable.container_ids)) == (STABLE, 1, 1, 1)
    assert canary.service == stable.service == STABLE
    holder = network_holder(docker_client, namespace, STABLE)
    replicas = workload_containers(docker_client, namespace, STABLE) + workload_containers(
        docker_client, namespace, CANARY
    )
    assert {r.attrs["HostConfig"]["NetworkMode"] for r in replicas} == {f"container:{holder.id}"}
    listed = {s.name: s for s in runtime.list() if s.namespace == namespace}
    assert listed == {STABLE: stable, CANARY: canary}
    # Per-Deployment identity: the same spec again changes neither Deployment.
    assert runtime.apply(canary_spec(test_server_image, namespace, replicas=3), ready_timeout=90) == canary
    assert runtime.get(namespace, STABLE) == stable

    counts = versions_over_fresh_connections(stable.url, 400)

    share = counts["canary"] / 400
    print(f"1 stable : 3 canary replicas, 400 connections: {dict(counts)}, canary share {share:.3f}")
    assert set(counts) == {"stable", "canary"}
    assert abs(share - 0.75) <= 0.08, counts


def test_one_to_one_replicas_split_connections_evenly(runtime, test_server_image, namespace):
    """1:1 over 400 fresh connections: the canary share is 0.5 +- 0.1 (sd 0.025, so 4 sd)."""
    stable = runtime.apply(stable_spec(test_server_image, namespace), ready_timeout=90)
    canary = runtime.apply(canary_spec(test_server_image, namespace), ready_timeout=90)
    assert canary.url == stable.url

    counts = versions_over_fresh_connections(stable.url, 400)

    share = counts["canary"] / 400
    print(f"1 stable : 1 canary replica, 400 connections: {dict(counts)}, canary share {share:.3f}")
    assert abs(share - 0.5) <= 0.1, counts


def test_updating_the_canary_leaves_the_stable_replicas_alone(runtime, test_server_image, namespace):
    stable = runtime.apply(stable_spec(test_server_image, namespace), ready_timeout=90)
    runtime.apply(canary_spec(test_server_image, namespace), ready_timeout=90)

    updated = runtime.apply(canary_spec(test_server_image, namespace, replicas=2), ready_timeout=90)

    assert (updated.replicas, updated.ready_replicas) == (2, 2)
    assert runtime.get(namespace, STABLE) == stable


def test_deleting_the_canary_keeps_the_stable_serving_every_request(
    runtime, test_server_image, namespace, docker_client
):
    stable = runtime.apply(stable_spec(test_server_image, namespace), ready_timeout=90)
    runtime.apply(canary_spec(test_server_image, namespace, replicas=2), ready_timeout=90)
    holder = network_holder(docker_client, namespace, STABLE)
    failures: list[str] = []
    versions: list[str] = []
    done = threading.Event()
    askers = keep_asking(stable.url, failures, versions, done)
    try:
        while "canary" not in versions and not failures:
            done.wait(0.05)
        runtime.delete(namespace, CANARY)
        assert runtime.get(namespace, CANARY) is None  # at once, while its replicas terminate
        assert runtime.wait_retired(timeout=60)
        seen = len(versions)
        while len(versions) < seen + 20 and not failures:
            done.wait(0.05)
    finally:
        done.set()
        for thread in askers:
            thread.join()

    assert failures == []
    assert versions[-20:] == ["stable"] * 20
    assert all_containers(docker_client, namespace, CANARY) == []
    assert network_holder(docker_client, namespace, STABLE).id == holder.id
    assert runtime.get(namespace, STABLE) == stable
    assert [s.name for s in runtime.list() if s.namespace == namespace] == [STABLE]

    runtime.delete(namespace, STABLE)  # the last Deployment of the Service takes its address along
    assert all_containers(docker_client, namespace, STABLE) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(stable.url + "/health", timeout=2)


def test_deleting_the_stable_first_keeps_the_address_for_the_canary(
    runtime, test_server_image, namespace, docker_client
):
    stable = runtime.apply(stable_spec(test_server_image, namespace), ready_timeout=90)
    canary = runtime.apply(canary_spec(test_server_image, namespace), ready_timeout=90)

    runtime.delete(namespace, STABLE)

    assert runtime.get(namespace, STABLE) is None
    assert runtime.get(namespace, CANARY) == canary
    assert [s.name for s in runtime.list() if s.namespace == namespace] == [CANARY]
    assert runtime.wait_retired(timeout=60)
    assert set(versions_over_fresh_connections(stable.url, 10)) == {"canary"}
    runtime.delete(namespace, CANARY)
    assert all_containers(docker_client, namespace, STABLE) + all_containers(docker_client, namespace, CANARY) == []


def test_replica_get_reads_each_replica_of_the_deployment_itself(runtime, test_server_image, namespace):
    runtime.apply(stable_spec(test_server_image, namespace), ready_timeout=90)
    canary = runtime.apply(canary_spec(test_server_image, namespace, replicas=2), ready_timeout=90)

    # The test server answers any GET with its VERSION and a per-process id, so a body shows which
    # replica answered. Through the shared group (3 listeners) repeated reads would mix them up.
    reads = [[json.loads(body) for body in runtime.replica_get(namespace, CANARY, "/metrics")] for _ in range(5)]

    assert len(reads[0]) == len(canary.container_ids) == 2
    assert {body["version"] for read in reads for body in read} == {"canary"}
    assert {body["path"] for read in reads for body in read} == {"/metrics"}
    assert len({body["instance"] for body in reads[0]}) == 2
    assert all(read == reads[0] for read in reads)
    [stable_body] = runtime.replica_get(namespace, STABLE, "/metrics")
    assert json.loads(stable_body)["version"] == "stable"
    assert runtime.replica_get(namespace, "nothing-here", "/metrics") == []


def test_spec_hash_of_an_existing_spec_is_what_it_was_before_services_spanned_deployments():
    """The hash decides whether running replicas are replaced: an unchanged manifest must keep its hash
    through the upgrade (values computed by the runtime before ``service_name`` and ``owner``)."""
    plain = WorkloadSpec(namespace="ns", name="iris", image="img@sha256:0")
    from_manifest = replace(base_manifest_spec("ns"), image="img@sha256:0", env={"VERSION": "v1"})

    assert spec_hash(plain) == "2684d1ea5bf2"
    assert spec_hash(from_manifest) == "f3a9cd72b6a4"
    assert spec_hash(replace(from_manifest, service_name="other", owner="app")) == "f3a9cd72b6a4"


class _RuntimeBeforeSharedServices(DockerLocalRuntime):
    """Labels containers as the runtime did when each Deployment had its own holder."""

    def _identity_labels(self, spec: WorkloadSpec, address: str, role: str) -> dict[str, str]:
        labels = super()._identity_labels(spec, address, role)
        for label in (L_SERVICE, L_OWNER, L_GRACE):
            labels.pop(label, None)
        return labels


def test_a_workload_from_before_shared_services_keeps_running_and_takes_a_canary(
    runtime, runtime_settings, test_server_image, namespace, docker_client
):
    old = _RuntimeBeforeSharedServices(runtime_settings).apply(stable_spec(test_server_image, namespace), 90)
    holder = network_holder(docker_client, namespace, STABLE)
    assert L_SERVICE not in holder.labels and holder.labels[L_NAME] == STABLE

    upgraded = DockerLocalRuntime(runtime_settings)
    assert upgraded.apply(stable_spec(test_server_image, namespace), ready_timeout=90) == old  # no restart
    canary = upgraded.apply(canary_spec(test_server_image, namespace), ready_timeout=90)

    assert canary.address == old.address
    assert network_holder(docker_client, namespace, STABLE).id == holder.id
    assert set(versions_over_fresh_connections(old.url, 40)) == {"stable", "canary"}  # all one: 2**-39
    upgraded.delete(namespace, CANARY)
    assert upgraded.get(namespace, STABLE) == old


def _manifests(namespace: str, image: str, canary_replicas: int | None) -> list[dict]:
    """What the renderer will emit for endpoint iris during a canary: one Service over both Deployments."""
    base_deployment = yaml.safe_load((BASE_MANIFESTS / "deployment.yaml").read_text())
    base_service = yaml.safe_load((BASE_MANIFESTS / "service.yaml").read_text())

    def deployment(name: str, labels: dict, replicas: int, version: str) -> dict:
        manifest = copy.deepcopy(base_deployment)
        manifest["metadata"] = {"name": name, "namespace": namespace, "labels": labels}
        manifest["spec"]["replicas"] = replicas
        manifest["spec"]["selector"]["matchLabels"] = labels
        manifest["spec"]["template"]["metadata"]["labels"] = labels
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        container["image"] = image
        container["env"] = [{"name": "VERSION", "value": version}]
        return manifest

    selector = {"app.kubernetes.io/component": "inference", "app.kubernetes.io/name": STABLE}
    service = copy.deepcopy(base_service)
    service["metadata"] = {"name": STABLE, "namespace": namespace}
    service["spec"]["selector"] = selector
    objects = [service, deployment(STABLE, selector, 1, "stable")]
    if canary_replicas is not None:
        objects.append(deployment(CANARY, {**selector, "mlops.io/track": "canary"}, canary_replicas, "canary"))
    return objects


def test_a_service_selecting_two_deployments_gives_both_its_address():
    stable, canary = pair_workloads(_manifests("ns", "img", canary_replicas=3), "ns")

    assert (stable.spec.name, stable.spec.service_name, stable.spec.service) == (STABLE, None, STABLE)
    assert (canary.spec.name, canary.spec.service_name, canary.spec.service) == (CANARY, STABLE, STABLE)
    assert stable.service is canary.service
    assert (canary.spec.replicas, canary.spec.service_port, canary.spec.container_port) == (3, 80, 8080)


def test_deployments_behind_one_service_must_agree_on_the_container_port():
    objects = _manifests("ns", "img", canary_replicas=1)
    objects[2]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 9090

    with pytest.raises(
        SyncFailed, match="container port 8080 in Deployment iris but to 9090 in Deployment iris-canary"
    ):
        pair_workloads(objects, "ns")


def test_the_local_target_syncs_both_deployments_and_prunes_the_canary(
    runtime, test_server_image, namespace, docker_client, tmp_path: Path
):
    settings = Settings(data_dir=tmp_path, target={"loopback_first": TEST_LOOPBACK_FIRST})
    target = LocalTarget(settings, lambda: runtime, lambda: None)  # type: ignore[arg-type,return-value]
    app = app_ref(namespace, STABLE)
    revisions = {
        "with-canary": _manifests(namespace, test_server_image, canary_replicas=2),
        "without": _manifests(namespace, test_server_image, canary_replicas=None),
    }
    target._objects = lambda app, revision: copy.deepcopy(revisions[revision])  # type: ignore[method-assign]
    log: list[str] = []

    synced = target.sync(app, "with-canary", log.append)

    stable, canary = runtime.get(namespace, STABLE), runtime.get(namespace, CANARY)
    assert stable is not None and canary is not None
    assert synced["deployment_url"] == stable.url == canary.url
    assert log[0].startswith(f"applying Deployment {namespace}/{STABLE} ")
    assert (canary.replicas, canary.ready_replicas, canary.owner) == (2, 2, app.application)
    assert target.served(app) is not None and target.served(app).url == stable.url  # type: ignore[union-attr]
    assert set(versions_over_fresh_connections(stable.url, 40)) == {"stable", "canary"}
    assert [json.loads(b)["version"] for b in target.replica_metrics(app, CANARY)] == ["canary", "canary"]

    failures: list[str] = []
    versions: list[str] = []
    done = threading.Event()
    askers = keep_asking(stable.url, failures, versions, done)
    try:
        target.sync(app, "without", log.append)
        assert runtime.wait_retired(timeout=60)
        seen = len(versions)
        while len(versions) < seen + 20 and not failures:
            done.wait(0.05)
    finally:
        done.set()
        for thread in askers:
            thread.join()

    assert failures == []
    assert versions[-20:] == ["stable"] * 20
    assert f"pruning {namespace}/{CANARY}" in log
    assert runtime.get(namespace, CANARY) is None and runtime.get(namespace, STABLE) == stable
    assert target.look_ready(app, "without", {}).__class__.__name__ == "Ready"

    target.sync(app, "with-canary", log.append)
    target.remove(app, "with-canary", log.append)
    assert all_containers(docker_client, namespace, STABLE) + all_containers(docker_client, namespace, CANARY) == []
