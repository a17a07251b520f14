"""Crash and resume: the control service runs as a real process
(``python -m control_api serve``) and is killed with SIGKILL at every step boundary of a deploy on the
``argocd`` target, then started again. The deploy completes once: one MLflow run and model version,
one image tag and digest in the registry, one deploy commit in the GitOps remote, one Argo CD sync.

One deploy lives through many service processes ("lives"), so the whole walk costs one training.
Each life ends in one of three ways:

- ``MLOPS_FAULTS__HALT_BEFORE_RECORDING_STEP=X``: the process SIGKILLs itself when step X has made its
  changes (run finished, version registered, image built, pushed, committed, sync requested, app
  healthy) but before the journal records it, so the next life runs X again: X must find its own
  earlier result instead of making a second one;
- ``MLOPS_FAULTS__HALT_AFTER_STEP=X``: it SIGKILLs itself right after the journal records X, so the
  next life starts at the step after X;
- the test SIGKILLs it from outside while a step is under way (mid-build, mid-wait).

Between the commit crash and its re-run another writer pushes an unrelated commit to the GitOps
remote, as a concurrent deploy of another model would: the re-run must still record (and Argo CD
sync) this deploy's own commit, not whatever is the branch head by then.

The Argo CD/Kubernetes simulator (tests/simulator) runs in the test process and outlives every
service process, like a real cluster; the service reaches it over loopback HTTP. Its synced apps run
on the local Docker Engine, so the final URL really serves predictions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.simulator import DockerKubelet, Simulator
from tests.support.control import example_request
from tests.support.paths import REPO_ROOT
from tests.support.ports import free_port

STEPS = ["train", "register", "build", "push", "commit", "sync", "wait"]
FINAL = ("deployed", "failed", "timed_out")
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
REPOSITORY_PREFIX = "mlops-crash"


@dataclass(frozen=True)
class Life:
    """How one service process ends: it halts itself at a fault point, or the test kills it while
    the deploy's status is ``kill_at_status`` and its step runs (the halt then is a backstop that
    stops the deploy from running on; reaching it fails the test, as the kill missed the step)."""

    halt_before_recording: str | None = None
    halt_after: str | None = None
    kill_at_status: str | None = None
    push_unrelated_commit_after: bool = False

    def __str__(self) -> str:
        if self.kill_at_status:
            return f"SIGKILL from outside while {self.kill_at_status}"
        if self.halt_before_recording:
            return f"halt after {self.halt_before_recording} did its work, before the journal records it"
        return f"halt after the journal recorded {self.halt_after}"


# Every boundary, both sides of every journal write, and two kills in the middle of a step.
LIVES = [
    Life(halt_before_recording="train"),
    Life(halt_after="train"),
    Life(halt_before_recording="register"),
    Life(halt_after="register"),
    Life(kill_at_status="building", halt_before_recording="build"),
    Life(halt_before_recording="build"),
    Life(halt_after="build"),
    Life(halt_before_recording="push"),
    Life(halt_after="push"),
    Life(halt_before_recording="commit", push_unrelated_commit_after=True),
    Life(halt_after="commit"),
    Life(halt_before_recording="sync"),
    Life(halt_after="sync"),
    Life(kill_at_status="waiting", halt_before_recording="wait"),
    Life(halt_before_recording="wait"),
    Life(halt_after="wait"),
]


class Service:
    """One life of the control service as a real process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # Where this life's part of the shared log starts.
        self.log_start = log_path.stat().st_size if log_path.exists() else 0
        base = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_FAULTS__")}
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "control_api", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env={**base, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def own_log(self) -> str:
        """What this life wrote to the shared log."""
        with open(self.log_path, "rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> bool:
        """True once /health answers; False if the process died first (a halt during start-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the service did not start:\n{self.log_tail()}")

    def wait_killed(self, ended=lambda: None, timeout: float = 600) -> None:
        """Wait for the halt; ``ended()`` returns the deploy's status once it is final (then no halt
        can come: fail at once instead of waiting out the timeout)."""
        deadline = time.monotonic() + timeout
        while (code := self.proc.poll()) is None:
            status = ended()
            if status is not None or time.monotonic() > deadline:
                self.sigkill()
                raise AssertionError(
                    f"the service did not halt (deploy {status or 'still running'}):\n{self.log_tail()}"
                )
            time.sleep(0.2)
        assert code == -signal.SIGKILL, f"the service exited with {code}, not by SIGKILL:\n{self.log_tail()}"

    def sigkill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.sigkill()

    def deployment(self, deployment_id: str) -> dict | None:
        """The deployment over HTTP, or None once the process is gone."""
        try:
            return httpx.get(f"{self.url}/mlops/deployments/{deployment_id}", timeout=10).json()
        except httpx.HTTPError:
            if self.proc.poll() is not None:
                return None
            raise


@pytest.fixture
def cluster(tmp_path, contracts_dir, kustomize_cmd, docker_client, registry_url, base_image):
    """Argo CD and a cluster running real containers (DockerKubelet); the service's GitOps remote is a
    bare repo in its data dir, registered in the AppProjects as an installation would."""
    namespace = f"crash-{uuid.uuid4().hex[:8]}"
    sim = Simulator(
        DockerKubelet(docker_client),
        work_dir=tmp_path / "simulator",
        kustomize_cmd=kustomize_cmd,
        contracts_dir=contracts_dir,
        namespaces=[namespace],
        source_repos=[(tmp_path / "data" / "gitops.git").as_uri(), str(tmp_path / "data" / "gitops.git")],
    )
    with sim:
        yield sim, sim, sim.checker, namespace


def git(bare: Path, *args: str, cwd: Path | None = None) -> str:
    command = ["git", *(["--git-dir", str(bare)] if cwd is None else []), *args]
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "other",
        "GIT_AUTHOR_EMAIL": "other@localhost",
        "GIT_COMMITTER_NAME": "other",
        "GIT_COMMITTER_EMAIL": "other@localhost",
    }
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def push_unrelated_commit(bare: Path, work: Path) -> str:
    """Another writer lands a commit on main (as a deploy of another model would)."""
    subprocess.run(["git", "clone", "-q", "--branch", "main", str(bare), str(work)], check=True, capture_output=True)
    (work / "NOTES.md").write_text("maintenance note from another writer\n")
    git(bare, "add", "NOTES.md", cwd=work)
    git(bare, "commit", "-q", "-m", "unrelated change by another writer", cwd=work)
    git(bare, "push", "-q", "origin", "main", cwd=work)
    return git(bare, "rev-parse", "HEAD", cwd=work).strip()


def commits_with_trailer(bare: Path, key: str, value: str) -> list[str]:
    log = git(bare, "log", "main", "--format=%H%x00%B%x1e")
    shas = []
    for record in log.split("\x1e"):
        if "\x00" not in record:
            continue
        sha, message = record.strip("\n").split("\x00", 1)
        if f"{key}: {value}" in message.splitlines():
            shas.append(sha)
    return shas


def check_state_after(life: Life, record) -> None:
    """What the journal shows right after a life ended: the fault landed where it was aimed."""
    steps = {s.name: s.status for s in record.steps}
    assert not record.is_final, (str(life), record.status)
    if life.kill_at_status:
        return  # check_killed_mid_step looked at it
    if life.halt_after:
        index = STEPS.index(life.halt_after)
        assert all(steps[name] == "succeeded" for name in STEPS[: index + 1]), (str(life), steps)
        assert all(steps[name] == "pending" for name in STEPS[index + 1 :]), (str(life), steps)
    else:
        index = STEPS.index(life.halt_before_recording)
        assert all(steps[name] == "succeeded" for name in STEPS[:index]), (str(life), steps)
        assert steps[life.halt_before_recording] == "running", (str(life), steps)


STEP_OF_STATUS = {"building": "build", "waiting": "wait"}
FAULT_HALT_LINE = "fault injection:"


def check_killed_mid_step(life: Life, record, service: Service) -> None:
    """The outside kill landed inside the step: the journal shows the step started and unfinished,
    every step before it done, and the process did not reach the step's backstop halt (which comes
    only once the step has made all its changes)."""
    step_name = STEP_OF_STATUS[life.kill_at_status]
    steps = {s.name: s for s in record.steps}
    index = STEPS.index(step_name)
    assert all(steps[name].status == "succeeded" for name in STEPS[:index]), (str(life), steps)
    killed = steps[step_name]
    assert (killed.status, killed.finished_at) == ("running", None), (str(life), killed)
    assert killed.started_at is not None, (str(life), killed)
    assert record.status == life.kill_at_status, (str(life), record.status)
    assert FAULT_HALT_LINE not in service.own_log(), (
        f"{life}: the step finished before the kill:\n{service.own_log()[-3000:]}"
    )


def test_sigkill_at_every_step_boundary_then_restart_deploys_once(
    tmp_path, venv_cache, cluster, registry_url, base_image
):
    from mlflow.tracking import MlflowClient

    from control_api.journal.store import Journal

    server, simulator, checker, namespace = cluster
    model = f"crash-{uuid.uuid4().hex[:6]}"
    data = tmp_path / "data"
    bare = data / "gitops.git"
    log_path = tmp_path / "service.log"
    env = {
        "MLOPS_DATA_DIR": str(data),
        "MLOPS_TRAINING__VENV_CACHE_DIR": str(venv_cache),
        "MLOPS_TRAINING__TIMEOUT_SECONDS": "300",
        "MLOPS_AUTH__MODE": "disabled",
        "MLOPS_TARGET__KIND": "argocd",
        "MLOPS_TARGET__READY_TIMEOUT_SECONDS": "180",
        "MLOPS_ARGOCD__SERVER_URL": server.argocd_url,
        "MLOPS_ARGOCD__TOKEN": "sim-argocd-token",
        "MLOPS_KUBERNETES__API_URL": server.kubernetes_url,
        "MLOPS_KUBERNETES__TOKEN": "sim-kubernetes-token",
        "MLOPS_REGISTRY__URL": registry_url,
        "MLOPS_REGISTRY__REPOSITORY_PREFIX": REPOSITORY_PREFIX,
        "MLOPS_BUILD__BASE_IMAGE": base_image,
        "MLOPS_API__ALLOWED_NAMESPACES": f'["{namespace}"]',
        "MLOPS_API__DEFAULT_NAMESPACE": namespace,
    }
    journal = Journal(f"sqlite:///{data / 'journal.db'}")
    deployment_id = None
    landed: list[str] = []
    service = None
    try:
        for number, life in enumerate(LIVES, start=1):
            faults = {}
            if life.halt_before_recording:
                faults["MLOPS_FAULTS__HALT_BEFORE_RECORDING_STEP"] = life.halt_before_recording
            if life.halt_after:
                faults["MLOPS_FAULTS__HALT_AFTER_STEP"] = life.halt_after
            service = Service({**env, **faults}, log_path)
            if deployment_id is None:
                assert service.wait_healthy(), service.log_tail()
                response = httpx.post(
                    f"{service.url}/mlops/deploy",
                    params={"wait": "false"},
                    json=example_request(model, namespace=namespace),
                    timeout=60,
                )
                assert response.status_code == 202, response.text
                deployment_id = response.json()["deployment_id"]

            def ended(deployment_id: str = deployment_id) -> str | None:
                record = journal.get(deployment_id)
                return record.status if record.is_final else None

            if life.kill_at_status:
                landed.append(f"life {number}: " + _kill_at_status(service, deployment_id, life.kill_at_status))
                check_killed_mid_step(life, journal.get(deployment_id), service)
            else:
                service.wait_killed(ended)
            record = journal.get(deployment_id)
            check_state_after(life, record)
            if life.push_unrelated_commit_after:
                push_unrelated_commit(bare, tmp_path / "other-writer")

        # The last life runs undisturbed to the end.
        service = Service(env, log_path)
        assert service.wait_healthy(), service.log_tail()
        deadline = time.monotonic() + 300
        final = service.deployment(deployment_id)
        while final["status"] not in FINAL and time.monotonic() < deadline:
            time.sleep(0.2)
            final = service.deployment(deployment_id)
        assert final["status"] == "deployed", (final, service.log_tail())
        record = journal.get(deployment_id)
    finally:
        if service is not None:
            service.stop()
        journal.engine.dispose()
    print("\n".join(landed))

    # The journal: every step succeeded; a step killed before it was recorded ran again (train did
    # not train again: its finished run was picked up).
    steps = {s["name"]: s for s in final["steps"]}
    assert list(steps) == STEPS
    assert all(s["status"] == "succeeded" for s in steps.values()), steps
    for name in STEPS:
        assert steps[name]["attempts"] >= 2, (name, steps[name])
    assert final["model_version"] == "1"

    # MLflow: one run for this deployment, one version of the model, made from that run.
    uri = f"sqlite:///{data / 'mlflow' / 'mlflow.db'}"
    mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = mlflow.search_model_versions(f"name = '{model}'")
    assert [str(v.version) for v in versions] == ["1"]
    assert versions[0].run_id == final["run_id"]
    runs = mlflow.search_runs(
        experiment_ids=[e.experiment_id for e in mlflow.search_experiments()],
        filter_string=f"tags.`mlops.deployment_id` = '{deployment_id}'",
    )
    assert [r.info.run_id for r in runs] == [final["run_id"]]

    # The registry: one tag for the model, pointing at the recorded digest.
    repository = f"{REPOSITORY_PREFIX}/{model}"
    tags = httpx.get(f"http://{registry_url}/v2/{repository}/tags/list", timeout=10).json()["tags"]
    assert tags == [f"v1-{deployment_id[:12]}"]
    manifest = httpx.head(
        f"http://{registry_url}/v2/{repository}/manifests/{tags[0]}",
        timeout=10,
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
        },
    )
    digest = manifest.headers["Docker-Content-Digest"]
    assert record.outputs["image_digest"] == digest
    assert final["image_uri"] == f"{registry_url}/{repository}@{digest}"
    # The build re-ran twice; its last run found the image the interrupted one had built.
    build_log = record.step("build").log_tail or ""
    assert "reused" in [line for line in build_log.splitlines() if "model image" in line][-1], build_log

    # The GitOps remote: one commit carries this deployment, and it is the one the journal recorded,
    # although the branch head had moved on to another writer's commit when the commit step re-ran.
    ours = commits_with_trailer(bare, "Deployment-Id", deployment_id)
    assert ours == [final["commit"]]
    assert len(git(bare, "rev-list", "main").split()) == 3  # seed, the unrelated commit, this deploy

    # Argo CD: synced to exactly that commit, once.
    application = simulator.get_application(f"{namespace}--{model}")
    status = application["status"]
    # (status.sync.revision is the branch head Argo CD compares with: the unrelated commit.)
    operation = status["operationState"]
    assert (operation["phase"], operation["syncResult"]["revision"]) == ("Succeeded", final["commit"])
    assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy")
    assert [h["revision"] for h in status["history"]] == [final["commit"]]
    assert checker.violations == []

    # And the URL serves the model.
    answer = httpx.post(
        final["inference_url"], json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "1" and len(answer.json()["predictions"]) == len(ROWS)


def _kill_at_status(service: Service, deployment_id: str, status: str) -> str:
    """SIGKILL the service as soon as the deploy shows ``status``. The step's backstop halt firing
    first means the kill missed the step's middle: that fails the test rather than passing unproven."""
    assert service.wait_healthy(), f"the service died before /health answered:\n{service.log_tail()}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        body = service.deployment(deployment_id)
        assert body is not None, f"the service died before the deploy showed {status}:\n{service.log_tail()}"
        assert body["status"] not in FINAL, body
        step_running = any(s["name"] == STEP_OF_STATUS[status] and s["status"] == "running" for s in body["steps"])
        # The status label is written just before the step record starts: wait for both.
        if body["status"] == status and step_running:
            service.sigkill()
            return f"killed while {status}"
        time.sleep(0.1)
    service.sigkill()
    raise AssertionError(f"the deploy never showed {status}")
