"""A change of ``replicas`` alone scales a Deployment's replicas instead of replacing them, on the real
Docker Engine: the ready replicas of the same pod template keep running (same container, not
restarted), only the missing ones start, or the surplus ones leave gracefully, newest first."""

from __future__ import annotations

import threading
from dataclasses import replace

from control_api.adapters.local_runtime import docker_runtime
from control_api.adapters.local_runtime.docker_runtime import (
    L_REPLICAS,
    L_TEMPLATE,
    DockerLocalRuntime,
    spec_hash,
    template_hash,
)
from tests.local_runtime.test_shared_service import keep_asking
from tests.support.local_runtime import answer, network_holder, spec_for, workload_containers


def _started_at(docker_client, container_id: str) -> tuple[str, int]:
    """When the container's process started, and how often Docker restarted it."""
    attrs = docker_client.containers.get(container_id).attrs
    return attrs["State"]["StartedAt"], attrs["RestartCount"]


def _created_order(docker_client, ids) -> list[str]:
    return sorted(ids, key=lambda i: docker_runtime._created(docker_client.containers.get(i)))


def test_the_template_hash_leaves_out_replicas_only(test_server_image, namespace):
    spec = spec_for(test_server_image, namespace)

    assert template_hash(spec) == template_hash(replace(spec, replicas=3))
    assert spec_hash(spec) != spec_hash(replace(spec, replicas=3))
    assert template_hash(spec) != template_hash(replace(spec, env={"VERSION": "v2"}))
    assert template_hash(spec) != template_hash(replace(spec, image=test_server_image + "-other"))
    assert template_hash(spec) != template_hash(replace(spec, container_port=9090))
    assert template_hash(spec) != template_hash(replace(spec, memory_limit="3Gi"))


def test_scaling_up_keeps_the_running_replica_and_starts_only_the_missing_ones(
    runtime, runtime_settings, test_server_image, namespace, docker_client
):
    one = runtime.apply(spec_for(test_server_image, namespace), ready_timeout=60)
    [first] = one.container_ids
    before = _started_at(docker_client, first)

    three = runtime.apply(spec_for(test_server_image, namespace, replicas=3), ready_timeout=60)

    assert first in three.container_ids
    assert (three.replicas, three.ready_replicas, len(three.container_ids)) == (3, 3, 3)
    assert _started_at(docker_client, first) == before  # the same process: not restarted
    assert runtime.wait_retired(timeout=60)
    replicas = workload_containers(docker_client, namespace, "iris")
    assert {c.id for c in replicas} == set(three.container_ids)
    holder = network_holder(docker_client, namespace, "iris")
    assert {c.attrs["HostConfig"]["NetworkMode"] for c in replicas} == {f"container:{holder.id}"}
    assert {c.labels[L_REPLICAS] for c in replicas if c.id != first} == {"3"}
    # All three listen in one group: 60 fresh connections reach every one (one missed: 3 * (2/3)**60).
    assert len({answer(three.url)["instance"] for _ in range(60)}) == 3
    # The status is by template, though the replicas' spec hashes differ (1 and 3 replicas).
    assert runtime.get(namespace, "iris") == three
    assert DockerLocalRuntime(runtime_settings).get(namespace, "iris") == three
    assert [s for s in runtime.list() if s.namespace == namespace] == [three]
    # The same spec again leaves them alone.
    assert runtime.apply(spec_for(test_server_image, namespace, replicas=3), ready_timeout=60) == three

    # Back to one: the newest two leave (as the ReplicaSet controller picks them), the first stays.
    back = runtime.apply(spec_for(test_server_image, namespace), ready_timeout=60)

    assert back.container_ids == (first,)
    assert (back.replicas, back.ready_replicas) == (1, 1)
    assert _started_at(docker_client, first) == before
    assert runtime.wait_retired(timeout=60)
    assert [c.id for c in workload_containers(docker_client, namespace, "iris")] == [first]
    assert runtime.get(namespace, "iris") == back


def test_scaling_down_terminates_the_surplus_without_failing_a_request(
    runtime, runtime_settings, test_server_image, namespace, docker_client
):
    # SLOW_STOP: a leaving replica finishes its requests for 1 s after SIGTERM.
    env = {"SLOW_STOP": "1"}
    three = runtime.apply(spec_for(test_server_image, namespace, replicas=3, env=env), ready_timeout=60)
    oldest = _created_order(docker_client, three.container_ids)[0]
    failures: list[str] = []
    versions: list[str] = []
    done = threading.Event()
    askers = keep_asking(three.url, failures, versions, done)
    try:
        while len(versions) < 20 and not failures:
            done.wait(0.05)
        one = runtime.apply(spec_for(test_server_image, namespace, replicas=1, env=env), ready_timeout=60)
        # apply returns while the surplus is terminating; the status already counts only the one kept.
        assert (one.replicas, one.ready_replicas, one.container_ids) == (1, 1, (oldest,))
        assert DockerLocalRuntime(runtime_settings).get(namespace, "iris") == one
        assert runtime.wait_retired(timeout=60)
        seen = len(versions)
        while len(versions) < seen + 20 and not failures:
            done.wait(0.05)
    finally:
        done.set()
        for thread in askers:
            thread.join()

    assert failures == []
    assert len(versions) >= 40
    assert [c.id for c in workload_containers(docker_client, namespace, "iris")] == [oldest]
    # The one kept was started for 3 replicas (its label cannot change): the status still says 1.
    assert docker_client.containers.get(oldest).labels[L_REPLICAS] == "3"
    assert runtime.get(namespace, "iris") == one


def test_a_change_of_env_with_the_same_replicas_still_replaces_every_replica(
    runtime, test_server_image, namespace, docker_client
):
    old = runtime.apply(spec_for(test_server_image, namespace, replicas=2), ready_timeout=60)

    new = runtime.apply(spec_for(test_server_image, namespace, replicas=2, env={"VERSION": "v2"}), ready_timeout=60)

    assert set(new.container_ids).isdisjoint(old.container_ids)
    assert (new.replicas, new.ready_replicas, len(new.container_ids)) == (2, 2, 2)
    # A change of both the template and the count replaces every replica too.
    both = runtime.apply(spec_for(test_server_image, namespace, replicas=3, env={"VERSION": "v3"}), ready_timeout=60)
    assert set(both.container_ids).isdisjoint(new.container_ids)
    assert (both.replicas, both.ready_replicas, len(both.container_ids)) == (3, 3, 3)
    assert runtime.wait_retired(timeout=60)
    assert {c.id for c in workload_containers(docker_client, namespace, "iris")} == set(both.container_ids)
    assert answer(both.url)["version"] == "v3"


def test_replicas_from_before_the_template_label_stay_until_their_first_scale_replaces_them(
    runtime, runtime_settings, test_server_image, namespace, docker_client, monkeypatch
):
    # As the runtime labelled replicas before: no template label (it writes one nobody reads).
    with monkeypatch.context() as patched:
        patched.setattr(docker_runtime, "L_TEMPLATE", "io.mlops.test.not-the-template-hash")
        old = DockerLocalRuntime(runtime_settings).apply(spec_for(test_server_image, namespace, replicas=2), 60)
    assert all(L_TEMPLATE not in c.labels for c in workload_containers(docker_client, namespace, "iris"))

    upgraded = DockerLocalRuntime(runtime_settings)
    assert upgraded.get(namespace, "iris") == old
    assert upgraded.apply(spec_for(test_server_image, namespace, replicas=2), ready_timeout=60) == old  # no restart

    scaled = upgraded.apply(spec_for(test_server_image, namespace, replicas=3), ready_timeout=60)

    assert set(scaled.container_ids).isdisjoint(old.container_ids)
    assert (scaled.replicas, scaled.ready_replicas, len(scaled.container_ids)) == (3, 3, 3)
    again = upgraded.apply(spec_for(test_server_image, namespace, replicas=1), ready_timeout=60)
    assert set(again.container_ids) < set(scaled.container_ids)
    assert upgraded.wait_retired(timeout=60)
