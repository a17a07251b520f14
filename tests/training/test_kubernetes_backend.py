"""KubernetesTrainingBackend against the simulated cluster with real containers (DockerKubelet): the Job
it creates, logs streamed while it runs, the named causes of failure (OOMKilled, DeadlineExceeded,
image pull, unschedulable), re-attaching after a restart, cancel, and the bounds on resources."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from control_api.adapters.image_builder.buildah import BuildahImageBuilder
from control_api.adapters.registry import make_registry
from control_api.adapters.registry.buildah_push import BuildahImagePusher
from control_api.errors import InvalidRequestError
from control_api.settings import BuildSettings, KubernetesSettings, KubernetesTrainingSettings, RegistrySettings
from control_api.stack.builders import builder_kind
from control_api.training.backends.base import TrainingBackend, TrainingRequest, TrainingResources, TrainingState
from control_api.training.backends.kubernetes import KubernetesTrainingBackend
from control_api.training.backends.kubernetes_api import KubernetesApi, KubernetesApiError, KubernetesApiUnavailable
from control_api.training.backends.training_image import build_training_image, training_image_key
from control_api.training.environments import environment_key, service_mlflow_version
from tests.simulator.kube_testing import RunningCluster, docker_cluster, wait_until

NAMESPACE = "mlops-training"


@pytest.fixture(scope="module")
def sim(base_image: str, contracts_dir) -> Iterator[RunningCluster]:
    with docker_cluster(base_image, contracts_dir, NAMESPACE) as running:
        yield running


def make_backend(sim: RunningCluster, **overrides: object) -> KubernetesTrainingBackend:
    settings = KubernetesTrainingSettings(
        namespace=NAMESPACE,
        unschedulable_grace_seconds=0,
        max_cpu="2",
        max_memory="1Gi",
        default_cpu="500m",
        default_memory="256Mi",
        ttl_seconds_after_finished=600,
        **overrides,  # type: ignore[arg-type]
    )
    api = KubernetesApi.from_settings(
        KubernetesSettings(api_url=sim.url, token=SecretStr(sim.token)), timeout_seconds=30
    )
    return KubernetesTrainingBackend(settings, api, default_timeout_seconds=600, work_bytes=64 * 2**20)


@pytest.fixture
def backend(sim: RunningCluster) -> KubernetesTrainingBackend:
    return make_backend(sim)


def jobs_of(sim: RunningCluster, deployment_id: str) -> list[dict]:
    return sim.cluster.list("Job", NAMESPACE, f"mlops.io/deployment-id={deployment_id}")


def pods_of_job(sim: RunningCluster, name: str) -> list[dict]:
    return sim.cluster.list("Pod", NAMESPACE, f"batch.kubernetes.io/job-name={name}")


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)


def request(deployment_id: str, image: str, script: str, **resources: object) -> TrainingRequest:
    return TrainingRequest(
        deployment_id=deployment_id,
        image=image,
        script=script,
        env={"MLFLOW_TRACKING_URI": "http://mlflow.example:5000", "MLFLOW_RUN_ID": f"run-{deployment_id}"},
        resources=TrainingResources(**resources),  # type: ignore[arg-type]
    )


def test_a_training_job_succeeds_with_its_logs_streamed(
    backend: KubernetesTrainingBackend, sim: RunningCluster, base_image: str
) -> None:
    script = (
        "import os, time\n"
        "print('run', os.environ['MLFLOW_RUN_ID'], 'uid', os.getuid(), flush=True)\n"
        "time.sleep(1)\n"
        "print('epoch 1 done', flush=True)\n"
    )
    lines = Lines()
    backend.start(request("dep-ok", base_image, script, cpu="500m", memory="256Mi", timeout_seconds=120), lines)
    [job] = jobs_of(sim, "dep-ok")
    spec = job["spec"]
    pod_spec = spec["template"]["spec"]
    assert (spec["backoffLimit"], pod_spec["restartPolicy"]) == (0, "Never")
    assert (spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (120, 600)
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    container = pod_spec["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}
    assert job["metadata"]["labels"]["mlops.io/deployment-id"] == "dep-ok"
    outcome = backend.wait("dep-ok", timeout=120)
    assert outcome.state is TrainingState.SUCCEEDED, outcome
    assert lines.lines == ["run run-dep-ok uid 65534", "epoch 1 done"]


def test_a_training_over_its_memory_limit_fails_naming_oomkilled(
    backend: KubernetesTrainingBackend, base_image: str
) -> None:
    hog = "x = []\nwhile True:\n    x.append(b'x' * (4 << 20))\n"
    backend.start(request("dep-oom", base_image, hog, memory="48Mi"))
    outcome = backend.wait("dep-oom", timeout=120)
    assert (outcome.state, outcome.reason) == (TrainingState.FAILED, "OOMKilled"), outcome
    assert "48Mi" in outcome.message
    backend.cancel("dep-oom")


def test_a_script_that_fails_names_the_jobs_backoff_limit_and_its_exit_code(
    backend: KubernetesTrainingBackend, base_image: str
) -> None:
    backend.start(request("dep-exit", base_image, "raise SystemExit(3)\n"))
    outcome = backend.wait("dep-exit", timeout=120)
    assert (outcome.state, outcome.reason) == (TrainingState.FAILED, "BackoffLimitExceeded"), outcome
    assert "exited with code 3" in outcome.message
    backend.cancel("dep-exit")


def test_a_training_over_its_timeout_fails_naming_the_deadline_and_its_job_is_deleted(
    backend: KubernetesTrainingBackend, sim: RunningCluster, base_image: str
) -> None:
    backend.start(request("dep-slow", base_image, "import time\ntime.sleep(120)\n", timeout_seconds=2))
    outcome = backend.wait("dep-slow", timeout=90)
    assert (outcome.state, outcome.reason) == (TrainingState.FAILED, "DeadlineExceeded")
    assert "2s" in outcome.message
    assert jobs_of(sim, "dep-slow") == []
    wait_until(lambda: not pods_of_job(sim, "train-dep-slow"), timeout=60, what="no pod left")


def test_a_restarted_service_reattaches_to_the_running_job_and_cancel_deletes_it(
    sim: RunningCluster, base_image: str
) -> None:
    script = "import time\nprint('started', flush=True)\ntime.sleep(120)\n"
    first = make_backend(sim)
    first.start(request("dep-again", base_image, script))
    [job] = jobs_of(sim, "dep-again")
    wait_until(
        lambda: any(
            "running" in (pod["status"].get("containerStatuses") or [{}])[0].get("state", {})
            for pod in pods_of_job(sim, job["metadata"]["name"])
        ),
        timeout=60,
        what="the training running",
    )

    restarted = make_backend(sim)  # a new process: nothing in memory
    lines = Lines()
    restarted.start(request("dep-again", base_image, script), lines)
    assert [found["metadata"]["uid"] for found in jobs_of(sim, "dep-again")] == [job["metadata"]["uid"]]
    assert restarted.look("dep-again").state is TrainingState.RUNNING
    wait_until(lambda: lines.lines == ["started"], timeout=30, what="the log of the re-attached job")

    restarted.cancel("dep-again")
    assert jobs_of(sim, "dep-again") == []
    assert sim.cluster.get("ConfigMap", NAMESPACE, f"{job['metadata']['name']}-script") is None
    wait_until(lambda: not pods_of_job(sim, job["metadata"]["name"]), timeout=60, what="its pod deleted")
    assert restarted.look("dep-again").reason == "Cancelled"


def test_an_image_that_cannot_be_pulled_fails_naming_the_pull(
    backend: KubernetesTrainingBackend, sim: RunningCluster, registry_url: str
) -> None:
    backend.start(request("dep-noimage", f"{registry_url}/mlops/no-such-training-image:1", "print(1)"))
    outcome = backend.wait("dep-noimage", timeout=60)
    assert (outcome.state, outcome.reason) == (TrainingState.FAILED, "ImagePullFailed")
    assert "no-such-training-image" in outcome.message
    assert jobs_of(sim, "dep-noimage") == []


def test_a_pod_no_node_can_hold_fails_naming_unschedulable(
    backend: KubernetesTrainingBackend, sim: RunningCluster, base_image: str
) -> None:
    backend.start(request("dep-gpu", base_image, "print(1)", gpu=1))
    [job] = jobs_of(sim, "dep-gpu")
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    outcome = backend.wait("dep-gpu", timeout=60)
    assert (outcome.state, outcome.reason) == (TrainingState.FAILED, "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in outcome.message
    assert jobs_of(sim, "dep-gpu") == []


def test_resources_beyond_the_bounds_are_refused_before_anything_is_created(
    backend: KubernetesTrainingBackend, sim: RunningCluster, base_image: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        backend.start(request("dep-big", base_image, "print(1)", cpu="4", gpu=2, timeout_seconds=10**9))
    fields = [problem["field"] for problem in refused.value.details]
    assert fields == ["training.cpu", "training.gpu", "training.timeout_seconds"]
    assert jobs_of(sim, "dep-big") == []


@pytest.mark.timeout(900)
def test_the_training_image_is_built_with_buildah_pushed_and_run_by_a_job(
    backend: KubernetesTrainingBackend, sim: RunningCluster, buildah_base_image: str, registry_url: str
) -> None:
    build = BuildSettings(backend="buildah", base_image=buildah_base_image, base_image_tls_verify=False)
    builder = builder_kind(build.backend).make(build)
    assert isinstance(builder, BuildahImageBuilder)
    builder.ensure_base_image(lambda line: None)  # what BuildahImageBuilder.build does first
    pusher = builder_kind(build.backend).make_pusher(build)
    assert isinstance(pusher, BuildahImagePusher)
    registry = RegistrySettings(url=registry_url, repository_prefix=f"mlops-kjobs-test/{uuid.uuid4().hex[:8]}")
    adapter = make_registry(registry, pusher)
    build_log: list[str] = []
    image = build_training_image(
        builder,
        adapter,
        build,
        registry.repository_prefix,
        python="3.11",
        user_requirements=[],
        on_log=build_log.append,
    )
    key, requirements = training_image_key("3.11", [])
    assert image.environment_key == key == environment_key("3.11", requirements)
    assert image.reference.startswith(f"{registry_url}/{registry.repository_prefix}/training@sha256:")
    again = build_training_image(
        builder,
        adapter,
        build,
        registry.repository_prefix,
        python="3.11",
        user_requirements=[],
        on_log=build_log.append,
    )
    assert again.reused and again.reference == image.reference

    script = (
        "import sys, mlflow\n"
        "print('mlflow', mlflow.__version__, 'hook', 'mlops_training_hook' in sys.modules, flush=True)\n"
    )
    lines = Lines()
    backend.start(request("dep-image", image.reference, script), lines)
    outcome = backend.wait("dep-image", timeout=300)
    assert outcome.state is TrainingState.SUCCEEDED, outcome
    assert lines.lines == [f"mlflow {service_mlflow_version()} hook True"]
    backend.cancel("dep-image")


def test_api_refusals_and_outages_are_told_apart(sim: RunningCluster, base_image: str) -> None:
    wrong_token = KubernetesTrainingBackend(
        KubernetesTrainingSettings(namespace=NAMESPACE, default_cpu="500m", default_memory="256Mi"),
        KubernetesApi.from_settings(KubernetesSettings(api_url=sim.url, token=SecretStr("wrong")), timeout_seconds=30),
        default_timeout_seconds=60,
        work_bytes=2**20,
    )
    with pytest.raises(KubernetesApiError) as refused:
        wrong_token.start(request("dep-auth", base_image, "print(1)"))
    assert "HTTP 401" in str(refused.value)
    sim.cluster.set_faults(api_flaky_5xx=True)
    try:
        backend = make_backend(sim)
        as_port: TrainingBackend = backend  # the backend satisfies the interface a pipeline step uses
        assert as_port is backend
        with pytest.raises(KubernetesApiUnavailable):
            for _ in range(2):  # every other request answers 503
                backend.find_job("dep-auth")
    finally:
        sim.cluster.clear_faults()
    assert jobs_of(sim, "dep-auth") == []
