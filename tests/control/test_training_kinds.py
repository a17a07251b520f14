"""The training backend kinds: ``training.backend`` selects the train step, the kind's settings rule
stops the service at start-up, and its bounds refuse a deploy's training resources before anything
is created. A throwaway kind registered in the test alone is picked up from its registry line."""

from __future__ import annotations

from typing import Any

import pytest

from control_api.app import create_app
from control_api.pipeline.factory import build_pipelines
from control_api.pipeline.pipelines import DEPLOY
from control_api.pipeline.step import StepContext, StepResult
from control_api.pipeline.steps.train import TrainStep
from control_api.pipeline.steps.train_kubernetes import KubernetesTrainStep, requested_resources
from control_api.services import Services
from control_api.settings import Settings, TrainingSettings
from control_api.stack.training import TRAINING_KINDS, TrainingKind
from control_api.stack.training.kind import admit_anything
from control_api.stack.validation import StackMisconfigured, stack_problems
from control_api.training.backends.base import TrainingResources
from control_api.training.backends.kubernetes import KubernetesTrainingBackend
from tests.support.control import assert_error_format, example_request

REMOTE_MLFLOW = {"tracking_uri": "http://mlflow.example:5000"}


def settings_with(tmp_path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", **values)


def test_kubernetes_training_with_the_embedded_mlflow_store_refuses_start_up(tmp_path):
    settings = settings_with(tmp_path, training={"backend": "kubernetes"})
    with pytest.raises(StackMisconfigured) as refused:
        create_app(settings)
    [problem] = refused.value.problems
    assert "MLOPS_TRAINING__BACKEND=kubernetes" in problem and "MLOPS_MLFLOW__TRACKING_URI" in problem
    local_store = settings_with(tmp_path, training={"backend": "kubernetes"}, mlflow={"tracking_uri": "sqlite:///x.db"})
    [problem] = stack_problems(local_store)
    assert "sqlite:///x.db" in problem
    assert stack_problems(settings_with(tmp_path, training={"backend": "kubernetes"}, mlflow=REMOTE_MLFLOW)) == []


def test_the_training_backend_selects_the_train_step(tmp_path):
    local = Services(settings_with(tmp_path))
    assert isinstance(build_pipelines(local)[DEPLOY].steps[0], TrainStep)
    assert local.training_backend is None
    kubernetes = Services(
        settings_with(
            tmp_path,
            training={"backend": "kubernetes"},
            mlflow=REMOTE_MLFLOW,
            kubernetes={"api_url": "https://kubernetes.example", "token": "t"},
        )
    )
    train = build_pipelines(kubernetes)[DEPLOY].steps[0]
    assert isinstance(train, KubernetesTrainStep) and train.name == "train"
    assert isinstance(kubernetes.training_backend, KubernetesTrainingBackend)


class Trained:
    name = "train"
    status_label = "training"
    max_attempts = 1

    def run(self, ctx: StepContext) -> StepResult:
        return StepResult({}, "trained elsewhere")


def test_a_registered_training_kind_supplies_the_train_step_and_its_rules(tmp_path, monkeypatch):
    step = Trained()
    kind = TrainingKind(
        name="throwaway",
        settings_problems=lambda settings: ["throwaway needs nothing but says so"],
        admit=admit_anything,
        make_train_step=lambda services: step,
    )
    monkeypatch.setitem(TRAINING_KINDS, kind.name, kind)
    settings = settings_with(tmp_path)
    settings = settings.model_copy(
        update={"training": TrainingSettings.model_construct(**{**settings.training.__dict__, "backend": "throwaway"})}
    )
    assert build_pipelines(Services(settings))[DEPLOY].steps[0] is step
    assert stack_problems(settings) == ["throwaway needs nothing but says so"]


def test_the_requests_training_field_becomes_the_backends_resources():
    assert requested_resources({}) == TrainingResources()
    asked = {"training": {"cpu": "2", "memory": "4Gi", "gpu": 1, "timeout_seconds": 600}}
    assert requested_resources(asked) == TrainingResources(cpu="2", memory="4Gi", gpu=1, timeout_seconds=600)


BOUNDS = {"max_cpu": "2", "max_memory": "4Gi", "max_gpu": 0, "max_timeout_seconds": 900}


@pytest.mark.parametrize(
    "training,fields",
    [
        ({"cpu": "4"}, ["training.cpu"]),
        ({"memory": "8Gi", "gpu": 1}, ["training.memory", "training.gpu"]),
        ({"timeout_seconds": 901}, ["training.timeout_seconds"]),
        ({"cpu": "lots"}, ["training.cpu"]),
    ],
)
def test_training_resources_beyond_the_bounds_are_422_and_create_nothing(make_client, training, fields):
    client = make_client(training={"backend": "kubernetes", "kubernetes": BOUNDS}, mlflow=REMOTE_MLFLOW)
    response = client.post("/mlops/deploy", json=example_request(training=training))
    error = assert_error_format(response, 422, "validation_error")
    assert [problem["field"] for problem in error["details"]] == fields
    assert {problem["rule"] for problem in error["details"]} == {"training_bounds"}
    assert "training" in error["message"]
    assert client.get("/mlops/deployments").json()["total"] == 0


def test_a_malformed_training_field_is_422(make_client):
    client = make_client(training={"backend": "kubernetes"}, mlflow=REMOTE_MLFLOW)
    response = client.post("/mlops/deploy", json=example_request(training={"gpu": -1, "disk": "1Gi"}))
    error = assert_error_format(response, 422, "validation_error")
    assert {problem["field"] for problem in error["details"]} == {"training.gpu", "training.disk"}
    assert client.get("/mlops/deployments").json()["total"] == 0
