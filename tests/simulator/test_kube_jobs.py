"""batch/v1 Jobs in the simulated cluster, over its HTTP API, with real containers (DockerKubelet):
the Job controller's pod, conditions and counts, deadlines, TTL, deletion propagation, OOM kills,
image pull failures, unschedulable pods, followed logs and schema validation on create."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.simulator.kube import KubeError
from tests.simulator.kube_testing import RunningCluster, docker_cluster, wait_until

NAMESPACE = "training"


@pytest.fixture(scope="module")
def sim(base_image: str, contracts_dir) -> Iterator[RunningCluster]:
    with docker_cluster(base_image, contracts_dir, NAMESPACE) as running:
        yield running


@pytest.fixture
def api(sim: RunningCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {sim.token}"}, timeout=30) as client:
        yield client


def job(name: str, image: str, command: list[str], **spec: object) -> dict:
    container: dict = {
        "name": "main",
        "image": image,
        "command": command,
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
    }
    container.update(spec.pop("container", {}))  # type: ignore[call-overload]
    pod_spec: dict = {"restartPolicy": "Never", "containers": [container]}
    pod_spec.update(spec.pop("pod", {}))  # type: ignore[call-overload]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}, **spec},
    }


JOBS = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


def get_job(api: httpx.Client, name: str) -> dict | None:
    answer = api.get(f"{JOBS}/{name}")
    return None if answer.status_code == 404 else answer.raise_for_status().json()


def pods_of(api: httpx.Client, name: str) -> list[dict]:
    return (
        api.get(PODS, params={"labelSelector": f"batch.kubernetes.io/job-name={name}"})
        .raise_for_status()
        .json()["items"]
    )


def job_condition(found: dict | None, condition_type: str) -> dict:
    conditions = ((found or {}).get("status") or {}).get("conditions") or []
    return next((item for item in conditions if item["type"] == condition_type), {})


def wait_condition(api: httpx.Client, name: str, condition_type: str, timeout: float = 60) -> dict:
    return wait_until(  # type: ignore[return-value]
        lambda: job_condition(get_job(api, name), condition_type),
        timeout=timeout,
        what=f"job {name} condition {condition_type}",
    )


def test_a_job_runs_one_pod_to_completion_with_conditions_counts_and_followed_logs(
    api: httpx.Client, base_image: str
) -> None:
    created = api.post(
        JOBS,
        json=job(
            "hello",
            base_image,
            ["python3", "-c", "import time\nfor i in range(3):\n print('line', i, flush=True)\n time.sleep(0.5)"],
        ),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    uid = body["metadata"]["uid"]
    assert body["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert body["spec"]["completions"] == 1 and body["spec"]["parallelism"] == 1
    assert body["spec"]["template"]["metadata"]["labels"]["job-name"] == "hello"
    assert api.post(JOBS, json=job("hello", base_image, ["true"])).status_code == 409
    pod = wait_until(lambda: pods_of(api, "hello"), timeout=30, what="the job's pod")[0]  # type: ignore[index]
    assert pod["metadata"]["name"].startswith("hello-")
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
    wait_until(
        lambda: (
            (api.get(f"{PODS}/{pod['metadata']['name']}").json().get("status") or {}).get("phase") == "Running"
            or job_condition(get_job(api, "hello"), "Complete")
        ),
        timeout=60,
        what="the pod running",
    )
    with api.stream("GET", f"{PODS}/{pod['metadata']['name']}/log", params={"follow": "true"}) as stream:
        assert stream.status_code == 200
        followed = "".join(stream.iter_text())
    assert followed.splitlines() == ["line 0", "line 1", "line 2"]
    complete = wait_condition(api, "hello", "Complete")
    assert complete["reason"] == "CompletionsReached"
    finished = get_job(api, "hello")
    assert finished is not None
    assert job_condition(finished, "SuccessCriteriaMet")["status"] == "True"
    status = finished["status"]
    assert status["succeeded"] == 1 and "failed" not in status and "active" not in status
    assert status["startTime"] <= status["completionTime"]
    terminated = api.get(f"{PODS}/{pod['metadata']['name']}").json()["status"]
    assert terminated["phase"] == "Succeeded"
    assert terminated["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    plain = api.get(f"{PODS}/{pod['metadata']['name']}/log")
    assert plain.text.splitlines() == ["line 0", "line 1", "line 2"]
    assert api.delete(f"{JOBS}/hello", params={"propagationPolicy": "Background"}).status_code == 200
    wait_until(lambda: not pods_of(api, "hello"), timeout=60, what="the job's pods deleted with it")


def test_a_container_over_its_memory_limit_is_oom_killed_and_the_job_fails(api: httpx.Client, base_image: str) -> None:
    hog = "x = []\nwhile True:\n    x.append(b'x' * (4 << 20))"
    spec = job("hog", base_image, ["python3", "-c", hog])
    spec["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "500m", "memory": "48Mi"}}
    assert api.post(JOBS, json=spec).status_code == 201
    failed = wait_condition(api, "hog", "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert job_condition(get_job(api, "hog"), "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert get_job(api, "hog")["status"]["failed"] == 1  # type: ignore[index]
    pod = pods_of(api, "hog")[0]
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    api.delete(f"{JOBS}/hog", params={"propagationPolicy": "Background"})


def test_active_deadline_fails_the_job_and_terminates_its_pod(api: httpx.Client, base_image: str) -> None:
    assert api.post(JOBS, json=job("slow", base_image, ["sleep", "120"], activeDeadlineSeconds=2)).status_code == 201
    failed = wait_condition(api, "slow", "Failed", timeout=90)
    assert failed["reason"] == "DeadlineExceeded"
    assert failed["message"] == "Job was active longer than specified deadline"
    status = get_job(api, "slow")["status"]  # type: ignore[index]
    assert "active" not in status and status["terminating"] == 0 and "completionTime" not in status
    wait_until(lambda: not pods_of(api, "slow"), timeout=60, what="the pod deleted by the deadline")
    api.delete(f"{JOBS}/slow", params={"propagationPolicy": "Background"})


def test_ttl_after_finished_deletes_the_job_and_its_pods(api: httpx.Client, base_image: str) -> None:
    assert api.post(JOBS, json=job("brief", base_image, ["true"], ttlSecondsAfterFinished=1)).status_code == 201
    wait_until(lambda: get_job(api, "brief") is None, timeout=60, what="the finished job deleted by its TTL")
    wait_until(lambda: not pods_of(api, "brief"), timeout=60, what="its pod deleted with it")


def test_deleting_a_job_without_a_policy_orphans_its_pods_as_batch_v1_does(
    api: httpx.Client, base_image: str, sim: RunningCluster
) -> None:
    assert api.post(JOBS, json=job("orphaner", base_image, ["sleep", "120"])).status_code == 201
    pod = wait_until(lambda: pods_of(api, "orphaner"), timeout=30, what="the pod")[0]  # type: ignore[index]
    assert api.delete(f"{JOBS}/orphaner").status_code == 200
    assert get_job(api, "orphaner") is None
    left = api.get(f"{PODS}/{pod['metadata']['name']}").json()
    assert "ownerReferences" not in left["metadata"] and "deletionTimestamp" not in left["metadata"]
    sim.cluster.delete("Pod", NAMESPACE, pod["metadata"]["name"])


def test_an_image_that_cannot_be_pulled_keeps_the_pod_pending(api: httpx.Client, registry_url: str) -> None:
    image = f"{registry_url}/mlops-sim/does-not-exist:1"
    assert api.post(JOBS, json=job("nopull", image, ["true"])).status_code == 201

    def pull_waiting() -> str:
        pods = pods_of(api, "nopull")
        statuses = (pods[0].get("status") or {}).get("containerStatuses") if pods else None
        return (statuses[0]["state"].get("waiting") or {}).get("reason", "") if statuses else ""

    reason = wait_until(
        lambda: pull_waiting() in ("ErrImagePull", "ImagePullBackOff") and pull_waiting(),
        timeout=60,
        what="pull failure",
    )
    assert reason in ("ErrImagePull", "ImagePullBackOff")
    assert pods_of(api, "nopull")[0]["status"]["phase"] == "Pending"
    waiting_log = api.get(f"{PODS}/{pods_of(api, 'nopull')[0]['metadata']['name']}/log", params={"follow": "true"})
    assert waiting_log.status_code == 400
    assert "is waiting to start: trying and failing to pull image" in waiting_log.json()["message"]
    assert get_job(api, "nopull")["status"]["active"] == 1  # type: ignore[index]
    api.delete(f"{JOBS}/nopull", params={"propagationPolicy": "Background"})


@pytest.mark.parametrize(
    ("name", "pod", "resources", "message"),
    [
        (
            "selector",
            {"nodeSelector": {"pool": "gpu"}},
            {"limits": {"memory": "64Mi"}},
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        ("gpu", {}, {"limits": {"nvidia.com/gpu": "1"}}, "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
        ("big", {}, {"requests": {"cpu": "64"}}, "0/1 nodes are available: 1 Insufficient cpu."),
    ],
)
def test_a_pod_that_fits_no_node_stays_unscheduled(
    api: httpx.Client, base_image: str, name: str, pod: dict, resources: dict, message: str
) -> None:
    spec = job(f"unfit-{name}", base_image, ["true"], pod=pod)
    spec["spec"]["template"]["spec"]["containers"][0]["resources"] = resources
    assert api.post(JOBS, json=spec).status_code == 201

    def scheduled_condition() -> dict:
        pods = pods_of(api, f"unfit-{name}")
        conditions = (pods[0].get("status") or {}).get("conditions") or [] if pods else []
        return next((item for item in conditions if item["type"] == "PodScheduled"), {})

    scheduled = wait_until(scheduled_condition, timeout=30, what="PodScheduled")
    assert scheduled == {**scheduled, "status": "False", "reason": "Unschedulable", "message": message}  # type: ignore[dict-item]
    assert pods_of(api, f"unfit-{name}")[0]["status"]["phase"] == "Pending"
    api.delete(f"{JOBS}/unfit-{name}", params={"propagationPolicy": "Background"})


def test_the_script_reaches_the_pod_as_a_config_map_volume(api: httpx.Client, base_image: str) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "script"},
        "data": {"train.py": "print('from the config map')"},
    }
    assert api.post(f"/api/v1/namespaces/{NAMESPACE}/configmaps", json=config_map).status_code == 201
    spec = job(
        "scripted",
        base_image,
        ["python3", "/script/train.py"],
        container={"volumeMounts": [{"name": "script", "mountPath": "/script", "readOnly": True}]},
        pod={
            "volumes": [{"name": "script", "configMap": {"name": "script"}}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534},
        },
    )
    assert api.post(JOBS, json=spec).status_code == 201
    wait_condition(api, "scripted", "Complete")
    pod = pods_of(api, "scripted")[0]
    assert api.get(f"{PODS}/{pod['metadata']['name']}/log").text == "from the config map\n"
    api.delete(f"{JOBS}/scripted", params={"propagationPolicy": "Background"})
    assert api.delete(f"/api/v1/namespaces/{NAMESPACE}/configmaps/script").status_code == 200


def test_invalid_jobs_are_refused_with_422_and_the_schema_violation_is_recorded(
    api: httpx.Client, base_image: str, sim: RunningCluster
) -> None:
    always = job("always", base_image, ["true"])
    always["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    refused = api.post(JOBS, json=always)
    assert refused.status_code == 422
    assert refused.json()["reason"] == "Invalid"
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in refused.json()["message"]
    assert get_job(api, "always") is None

    before = len(sim.checker.violations)
    typo = job("typo", base_image, ["true"])
    typo["spec"]["backoffLimit"] = "none"
    refused = api.post(JOBS, json=typo)
    assert refused.status_code == 422 and "backoffLimit" in refused.json()["message"]
    assert get_job(api, "typo") is None
    recorded = sim.checker.violations[before:]
    assert [violation.schema for violation in recorded] == ["Job"]
    del sim.checker.violations[before:]  # the module fixture asserts no other violation happened


def test_a_job_applied_in_process_gets_the_same_defaults_and_keeps_them_on_reapply(
    sim: RunningCluster, base_image: str
) -> None:
    manifest = {
        **job("applied", base_image, ["true"], suspend=True),
        "metadata": {"name": "applied", "namespace": NAMESPACE},
    }
    first = sim.cluster.apply(manifest)
    uid = first["metadata"]["uid"]
    assert first["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    again = sim.cluster.apply(manifest)
    assert again["spec"]["selector"] == first["spec"]["selector"]
    assert again["metadata"]["generation"] == 1
    always = job("applied-always", base_image, ["true"])
    always["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(KubeError) as refused:
        sim.cluster.apply({**always, "metadata": {"name": "applied-always", "namespace": NAMESPACE}})
    assert refused.value.status == 422
    sim.cluster.delete("Job", NAMESPACE, "applied", propagation_policy="Background")


def test_foreground_deletion_keeps_the_job_until_its_pods_are_gone(api: httpx.Client, base_image: str) -> None:
    assert api.post(JOBS, json=job("fg", base_image, ["sleep", "120"])).status_code == 201
    wait_until(lambda: pods_of(api, "fg"), timeout=30, what="the pod")
    answer = api.request(
        "DELETE", f"{JOBS}/fg", json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
    )
    assert answer.status_code == 200
    deleting = answer.json()
    assert "deletionTimestamp" in deleting["metadata"] and "foregroundDeletion" in deleting["metadata"]["finalizers"]
    wait_until(lambda: get_job(api, "fg") is None, timeout=90, what="the job gone after its pod")
    assert pods_of(api, "fg") == []
    assert api.delete(f"{JOBS}/fg").status_code == 404
    assert api.delete(f"{JOBS}/x", params={"propagationPolicy": "Sideways"}).status_code == 400
