"""DockerLocalRuntime on the real Docker Engine with a tiny test server image."""

from __future__ import annotations

import threading
from dataclasses import replace

import httpx
import pytest

from control_api.adapters.local_runtime.docker_runtime import (
    L_ADDRESS,
    L_HASH,
    L_IMAGE,
    L_NAME,
    L_NAMESPACE,
    L_PORT,
    L_REPLICAS,
    DockerLocalRuntime,
)
from control_api.errors import DeploymentTimedOut, SyncFailed
from tests.support.local_runtime import (
    TEST_LOOPBACK_FIRST,
    all_containers,
    answer,
    network_holder,
    spec_for,
    workload_containers,
)


def test_apply_serves_on_its_own_loopback_address_with_limits(runtime, test_server_image, namespace, docker_client):
    spec = spec_for(test_server_image, namespace, cpu_limit="500m", memory_limit="256Mi")

    status = runtime.apply(spec, ready_timeout=60)

    last_octet = int(status.address.rsplit(".", 1)[1])
    assert status.address.startswith("127.0.0.") and last_octet >= TEST_LOOPBACK_FIRST
    assert (status.port, status.replicas, status.ready_replicas) == (80, 1, 1)
    assert status.url == f"http://{status.address}"
    assert answer(status.url)["version"] == "v1"
    [container] = workload_containers(docker_client, namespace, "iris")
    host_config = container.attrs["HostConfig"]
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Memory"] == 256 * 2**20
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert container.labels[L_ADDRESS] == status.address
    assert container.name.startswith(f"mlops-{namespace}-iris-")


def test_applying_the_same_spec_again_leaves_the_containers_alone(runtime, test_server_image, namespace):
    spec = spec_for(test_server_image, namespace)
    first = runtime.apply(spec, ready_timeout=60)

    again = runtime.apply(spec, ready_timeout=60)

    assert again.container_ids == first.container_ids
    assert again.address == first.address


def test_new_version_replaces_the_old_only_once_ready(runtime, test_server_image, namespace, docker_client):
    old = runtime.apply(spec_for(test_server_image, namespace), ready_timeout=60)
    new_spec = spec_for(test_server_image, namespace, env={"VERSION": "v2", "READY_DELAY": "3"})
    observed_overlap = threading.Event()
    done = threading.Event()

    def watch() -> None:
        # While the new container is up but not yet ready, the old one must still be there.
        while not done.is_set():
            containers = workload_containers(docker_client, namespace, "iris")
            old_alive = any(c.id in old.container_ids and c.status == "running" for c in containers)
            new_unready = any(
                c.id not in old.container_ids and (c.attrs["State"].get("Health") or {}).get("Status") != "healthy"
                for c in containers
            )
            if old_alive and new_unready:
                observed_overlap.set()
            done.wait(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        new = runtime.apply(new_spec, ready_timeout=60)
    finally:
        done.set()
        watcher.join()

    assert observed_overlap.is_set()
    assert new.address == old.address
    assert set(new.container_ids).isdisjoint(old.container_ids)
    # The old replica got SIGTERM before apply returned; it is removed once it has exited.
    assert runtime.wait_retired(timeout=60)
    assert {c.id for c in workload_containers(docker_client, namespace, "iris")} == set(new.container_ids)
    assert answer(new.url)["version"] == "v2"


def test_apply_returns_while_the_old_replica_is_still_terminating(
    runtime, runtime_settings, test_server_image, namespace, docker_client
):
    # SLOW_STOP: the old replica takes 3 s to exit after SIGTERM (a server finishing its requests).
    old = runtime.apply(spec_for(test_server_image, namespace, env={"SLOW_STOP": "3"}), ready_timeout=60)
    new = runtime.apply(spec_for(test_server_image, namespace, env={"VERSION": "v2"}), ready_timeout=60)
    [old_container] = [c for c in workload_containers(docker_client, namespace, "iris") if c.id in old.container_ids]
    assert old_container.status == "running"  # terminating, not waited for
    assert new.ready_replicas == 1 and set(new.container_ids).isdisjoint(old.container_ids)
    # Terminating replicas are no longer part of the workload: the same spec again changes nothing.
    assert runtime.apply(spec_for(test_server_image, namespace, env={"VERSION": "v2"}), ready_timeout=60) == new
    # So does a restarted service: the terminating replica is marked in Docker, not only in memory.
    assert DockerLocalRuntime(runtime_settings).get(namespace, "iris") == new
    assert runtime.wait_retired(timeout=60)
    assert {c.id for c in workload_containers(docker_client, namespace, "iris")} == set(new.container_ids)


def test_a_new_version_that_never_gets_ready_leaves_the_old_serving(
    runtime, test_server_image, namespace, docker_client
):
    old = runtime.apply(spec_for(test_server_image, namespace), ready_timeout=60)

    with pytest.raises(DeploymentTimedOut) as raised:
        runtime.apply(
            spec_for(test_server_image, namespace, env={"VERSION": "v2", "NEVER_READY": "1"}), ready_timeout=5
        )

    # The new replica's own probe saw its 503, though the old replica shares the port and answers 200.
    assert "readiness probe answered 503" in raised.value.message

    assert {c.id for c in workload_containers(docker_client, namespace, "iris")} == set(old.container_ids)
    assert answer(old.url)["version"] == "v1"
    assert runtime.get(namespace, "iris").image == test_server_image


def test_a_new_version_that_crashes_is_a_sync_failure_with_its_logs(
    runtime, test_server_image, namespace, docker_client
):
    old = runtime.apply(spec_for(test_server_image, namespace), ready_timeout=60)

    with pytest.raises(SyncFailed) as raised:
        runtime.apply(spec_for(test_server_image, namespace, env={"VERSION": "v2", "EXIT_CODE": "3"}), ready_timeout=30)

    assert "crashing on purpose" in raised.value.message
    assert {c.id for c in workload_containers(docker_client, namespace, "iris")} == set(old.container_ids)
    assert answer(old.url)["version"] == "v1"


def test_replicas_share_the_address(runtime, test_server_image, namespace, docker_client):
    status = runtime.apply(spec_for(test_server_image, namespace, replicas=2), ready_timeout=60)

    assert (status.replicas, status.ready_replicas, len(status.container_ids)) == (2, 2, 2)
    containers = workload_containers(docker_client, namespace, "iris")
    assert {c.labels[L_ADDRESS] for c in containers} == {status.address}
    # Both replicas hold a listening socket on the shared address: the kernel spreads connections by
    # source port, so 40 fresh connections reach both (all on one: probability 2**-39).
    instances = {answer(status.url)["instance"] for _ in range(40)}
    assert len(instances) == 2


def test_another_runtime_instance_finds_workloads_from_labels(runtime, runtime_settings, test_server_image, namespace):
    first = runtime.apply(spec_for(test_server_image, namespace), ready_timeout=60)
    other = runtime.apply(spec_for(test_server_image, namespace, name="wine"), ready_timeout=60)

    restarted = DockerLocalRuntime(runtime_settings)

    found = restarted.get(namespace, "iris")
    assert found is not None
    assert (found.address, found.image, found.container_ids) == (first.address, first.image, first.container_ids)
    assert other.address != first.address
    listed = {(s.namespace, s.name): s.address for s in restarted.list() if s.namespace == namespace}
    assert listed == {(namespace, "iris"): first.address, (namespace, "wine"): other.address}
    assert (
        restarted.apply(spec_for(test_server_image, namespace), ready_timeout=60).container_ids == first.container_ids
    )


def test_delete_removes_the_workload(runtime, test_server_image, namespace, docker_client):
    status = runtime.apply(spec_for(test_server_image, namespace), ready_timeout=60)

    runtime.delete(namespace, "iris")

    assert all_containers(docker_client, namespace, "iris") == []
    assert runtime.get(namespace, "iris") is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(status.url + "/health", timeout=2)


def test_a_freed_address_is_handed_out_again(runtime, test_server_image, namespace):
    first = runtime.apply(spec_for(test_server_image, namespace, name="one"), ready_timeout=60)
    runtime.delete(namespace, "one")

    second = runtime.apply(spec_for(test_server_image, namespace, name="two"), ready_timeout=60)

    assert second.address == first.address


def test_spec_hash_changes_with_what_the_containers_run(test_server_image, namespace):
    from control_api.adapters.local_runtime.docker_runtime import spec_hash

    spec = spec_for(test_server_image, namespace)
    assert spec_hash(spec) == spec_hash(replace(spec))
    assert spec_hash(spec) != spec_hash(replace(spec, env={"VERSION": "v2"}))
    assert spec_hash(spec) != spec_hash(replace(spec, image=test_server_image + "-other"))
    assert spec_hash(spec) != spec_hash(replace(spec, replicas=3))
    assert L_HASH.endswith("spec-hash")


def test_replicas_run_non_root_read_only_without_capabilities_off_the_host_network(
    runtime, test_server_image, namespace, docker_client
):
    status = runtime.apply(spec_for(test_server_image, namespace), ready_timeout=60)

    [replica] = workload_containers(docker_client, namespace, "iris")
    holder = network_holder(docker_client, namespace, "iris")

    def run(command: str):
        result = replica.exec_run(["sh", "-c", command])
        return result.exit_code, result.output.decode().strip()

    assert run("id -u") == (0, "10001")
    assert run("id -g") == (0, "10001")
    assert "10001" in run("id -G")[1].split()
    code, output = run("touch /written-to-root")
    assert code != 0 and "Read-only file system" in output
    assert run("touch /tmp/scratch && echo ok") == (0, "ok")
    tmp_mount = next(line for line in run("cat /proc/mounts")[1].splitlines() if line.split()[1] == "/tmp")
    assert tmp_mount.split()[2] == "tmpfs" and f"size={2**30 // 1024}k" in tmp_mount
    # No capability in any set, and no way to gain one (no-new-privileges).
    proc_status = dict(line.split(":\t", 1) for line in run("cat /proc/1/status")[1].splitlines() if ":\t" in line)
    assert {proc_status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {"0000000000000000"}
    assert proc_status["NoNewPrivs"].strip() == "1"

    assert replica.attrs["HostConfig"]["NetworkMode"] == f"container:{holder.id}"
    assert holder.attrs["HostConfig"]["NetworkMode"] == "mlops-models"
    assert holder.attrs["HostConfig"]["ReadonlyRootfs"] and holder.attrs["Config"]["User"] == "65534:65534"
    assert holder.attrs["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": status.address, "HostPort": "80"}]}
    assert answer(status.url)["version"] == "v1"


def test_an_update_keeps_serving_every_request(runtime, test_server_image, namespace):
    old = runtime.apply(spec_for(test_server_image, namespace, replicas=2), ready_timeout=60)
    failures: list[str] = []
    versions: list[str] = []
    done = threading.Event()

    def keep_asking() -> None:
        while not done.is_set():
            try:
                response = httpx.get(old.url + "/health", timeout=5)  # a fresh connection each time
                if response.status_code == 200:
                    versions.append(response.json()["version"])
                else:
                    failures.append(f"{response.status_code} {response.text[:100]}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        new = runtime.apply(
            spec_for(test_server_image, namespace, replicas=2, env={"VERSION": "v2", "READY_DELAY": "2"}),
            ready_timeout=60,
        )
        # Ask on a little after the old replicas are gone (they got SIGTERM before apply returned).
        assert runtime.wait_retired(timeout=60)
        seen_before = len(versions)
        while len(versions) < seen_before + 20 and not failures:
            done.wait(0.05)
    finally:
        done.set()
        asker.join()

    assert failures == []
    assert new.address == old.address and new.ready_replicas == 2
    assert versions[0] == "v1" and versions[-1] == "v2"
    assert versions[-20:] == ["v2"] * 20


def test_an_image_that_writes_to_its_read_only_root_fails_the_sync_saying_why(
    runtime, test_server_image, namespace, docker_client
):
    with pytest.raises(SyncFailed) as raised:
        runtime.apply(spec_for(test_server_image, namespace, env={"WRITE_TO": "/model-cache"}), ready_timeout=60)

    message = raised.value.message
    assert "Read-only file system: '/model-cache'" in message
    assert "uid 10001, gid 10001; read-only root filesystem; capabilities dropped: ALL" in message
    # Nothing is left behind holding the address.
    assert all_containers(docker_client, namespace, "iris") == []
    assert runtime.get(namespace, "iris") is None


def test_run_as_non_root_refuses_a_root_user_before_starting_anything(
    runtime, test_server_image, namespace, docker_client
):
    spec = spec_for(test_server_image, namespace)
    as_root = replace(spec, security=replace(spec.security, run_as_user=0))
    image_user_spec = replace(spec, security=replace(spec.security, run_as_user=None))

    with pytest.raises(SyncFailed, match="runAsNonRoot is set but the container would run as uid 0"):
        runtime.apply(as_root, ready_timeout=60)
    # The test image sets no USER, so without runAsUser it would run as root too.
    with pytest.raises(SyncFailed, match=r"uid 0 \(the image sets no USER\)"):
        runtime.apply(image_user_spec, ready_timeout=60)

    assert all_containers(docker_client, namespace, "iris") == []


def test_a_workload_left_on_the_host_network_moves_off_it_and_keeps_its_address(
    runtime, test_server_image, namespace, docker_client
):
    address = runtime._address_for(namespace, "iris")
    legacy = docker_client.containers.run(
        test_server_image,
        detach=True,
        network_mode="host",
        user="0",
        environment={"HOST": address, "PORT": "80", "REUSE_PORT": "1", "VERSION": "legacy"},
        labels={
            L_NAMESPACE: namespace,
            L_NAME: "iris",
            L_ADDRESS: address,
            L_PORT: "80",
            L_HASH: "legacy",
            L_REPLICAS: "1",
            L_IMAGE: test_server_image,
        },
    )
    assert runtime.get(namespace, "iris").address == address

    status = runtime.apply(spec_for(test_server_image, namespace), ready_timeout=60)

    assert status.address == address
    assert answer(status.url)["version"] == "v1"
    assert legacy.id not in {c.id for c in all_containers(docker_client, namespace, "iris")}
    assert {c.attrs["HostConfig"]["NetworkMode"] for c in all_containers(docker_client, namespace, "iris")} == {
        "mlops-models",
        f"container:{network_holder(docker_client, namespace, 'iris').id}",
    }
