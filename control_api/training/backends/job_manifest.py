"""The training Job, its script ConfigMap and its environment Secret, rendered from templates
(jinja2, StrictUndefined) and parsed back, with the resources a training asks for checked against the
settings' bounds."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from ruamel.yaml import YAML

from control_api.errors import InvalidRequestError
from control_api.settings import KubernetesTrainingSettings
from control_api.training.backends.base import TrainingRequest, TrainingResources
from renderer.quantities import cpu_millicores, format_bytes, memory_bytes
from renderer.templating import yaml_environment

DEPLOYMENT_ID_LABEL = "mlops.io/deployment-id"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU_RESOURCE = "nvidia.com/gpu"
SCRIPT_MOUNT = "/script"
SCRIPT_FILE = "train.py"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return yaml_environment("control_api.training.backends", "templates")


def _render(template: str, **values: Any) -> dict[str, Any]:
    text = _environment().get_template(template).render(**values)
    documents = list(YAML(typ="safe").load_all(text))
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise ValueError(f"{template} must render exactly one mapping, got {len(documents)} documents")
    return documents[0]


def job_name(deployment_id: str) -> str:
    """A DNS label (at most 52 characters, so the pod names the Job controller derives stay valid),
    readable and unique per deployment id."""
    readable = re.sub(r"[^a-z0-9-]+", "-", deployment_id.lower()).strip("-")[:32].strip("-")
    digest = hashlib.sha256(deployment_id.encode()).hexdigest()[:8]
    return f"train-{readable}-{digest}" if readable else f"train-{digest}"


def deployment_label_value(deployment_id: str) -> str:
    if len(deployment_id) > 63 or not _LABEL_VALUE.match(deployment_id):
        raise InvalidRequestError(
            f"deployment id {deployment_id!r} cannot be a Kubernetes label value",
            details={"field": "deployment_id"},
        )
    return deployment_id


@dataclass(frozen=True)
class BoundedResources:
    cpu: str
    memory: str
    gpu: int
    timeout_seconds: int


def bound_resources(
    resources: TrainingResources, settings: KubernetesTrainingSettings, *, default_timeout_seconds: int
) -> BoundedResources:
    """The request's resources with the settings' defaults filled in; beyond a bound is a 4xx."""
    cpu = resources.cpu or settings.default_cpu
    memory = resources.memory or settings.default_memory
    timeout = resources.timeout_seconds or min(default_timeout_seconds, settings.max_timeout_seconds)
    problems: list[dict[str, str]] = []
    try:
        if cpu_millicores(cpu) > cpu_millicores(settings.max_cpu) or cpu_millicores(cpu) <= 0:
            problems.append({"field": "training.cpu", "message": f"{cpu} is not within (0, {settings.max_cpu}]"})
    except ValueError as error:
        problems.append({"field": "training.cpu", "message": str(error)})
    try:
        if memory_bytes(memory) > memory_bytes(settings.max_memory) or memory_bytes(memory) <= 0:
            problems.append(
                {"field": "training.memory", "message": f"{memory} is not within (0, {settings.max_memory}]"}
            )
    except ValueError as error:
        problems.append({"field": "training.memory", "message": str(error)})
    if not 0 <= resources.gpu <= settings.max_gpu:
        problems.append({"field": "training.gpu", "message": f"{resources.gpu} is not within [0, {settings.max_gpu}]"})
    if not 0 < timeout <= settings.max_timeout_seconds:
        problems.append(
            {
                "field": "training.timeout_seconds",
                "message": f"{timeout} is not within (0, {settings.max_timeout_seconds}]",
            }
        )
    if problems:
        raise InvalidRequestError(
            "training resources are beyond what this service allows: "
            + "; ".join(f"{item['field']}: {item['message']}" for item in problems),
            details=problems,
        )
    return BoundedResources(cpu=cpu, memory=memory, gpu=resources.gpu, timeout_seconds=int(timeout))


def job_labels(deployment_id: str) -> dict[str, str]:
    return {
        DEPLOYMENT_ID_LABEL: deployment_label_value(deployment_id),
        COMPONENT_LABEL: "training",
        MANAGED_BY_LABEL: "mlops-control",
    }


def render_job(
    request: TrainingRequest,
    settings: KubernetesTrainingSettings,
    resources: BoundedResources,
    *,
    work_bytes: int,
) -> dict[str, Any]:
    name = job_name(request.deployment_id)
    labels = job_labels(request.deployment_id)
    if settings.kueue_queue:
        labels[KUEUE_QUEUE_LABEL] = settings.kueue_queue
    limits = {"cpu": resources.cpu, "memory": resources.memory}
    if resources.gpu:
        limits[GPU_RESOURCE] = str(resources.gpu)
    tolerations = [
        {key: value if key == "tolerationSeconds" else str(value) for key, value in toleration.items()}
        for toleration in settings.tolerations
    ]
    return _render(
        "job.yaml.j2",
        job_name=name,
        namespace=settings.namespace,
        labels=labels,
        pod_labels=job_labels(request.deployment_id),
        active_deadline_seconds=resources.timeout_seconds,
        ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
        run_as_user=settings.run_as_user,
        node_selector=settings.node_selector,
        tolerations=tolerations,
        image_pull_secrets=settings.image_pull_secrets,
        config_map_name=config_map_name(request.deployment_id),
        work_size=format_bytes(work_bytes),
        image=request.image,
        image_pull_policy=settings.image_pull_policy,
        command=list(request.command or ["python", f"{SCRIPT_MOUNT}/{SCRIPT_FILE}"]),
        env={"TMPDIR": "/work", **request.env},
        secret_env_names=sorted(request.secret_env),
        secret_name=secret_name(request.deployment_id),
        requests=dict(limits),  # requests equal limits: the Guaranteed QoS class, no overcommit
        limits=limits,
    )


def config_map_name(deployment_id: str) -> str:
    return f"{job_name(deployment_id)}-script"


def _render_owned_by_job(
    template: str, deployment_id: str, name: str, namespace: str, job_uid: str, **values: Any
) -> dict[str, Any]:
    """An object the Job owns (``ownerReferences``), so the garbage collector deletes it with the Job."""
    return _render(
        template,
        name=name,
        namespace=namespace,
        labels=job_labels(deployment_id),
        job_name=job_name(deployment_id),
        job_uid=job_uid,
        **values,
    )


def render_script_config_map(request: TrainingRequest, namespace: str, job_uid: str) -> dict[str, Any]:
    """The script as a ConfigMap, mounted read-only in the pod."""
    name = config_map_name(request.deployment_id)
    return _render_owned_by_job(
        "script-configmap.yaml.j2",
        request.deployment_id,
        name,
        namespace,
        job_uid,
        script_file=SCRIPT_FILE,
        script=request.script,
    )


def secret_name(deployment_id: str) -> str:
    return f"{job_name(deployment_id)}-env"


def render_env_secret(request: TrainingRequest, namespace: str, job_uid: str) -> dict[str, Any]:
    """The training's credential-bearing variables as a Secret: whoever may read Jobs in the
    namespace does not read the tracking server's password."""
    data = {name: base64.b64encode(value.encode()).decode() for name, value in sorted(request.secret_env.items())}
    return _render_owned_by_job(
        "env-secret.yaml.j2", request.deployment_id, secret_name(request.deployment_id), namespace, job_uid, data=data
    )
