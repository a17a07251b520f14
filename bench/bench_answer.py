"""Time from "Application Synced+Healthy with an address" to the answer, for the ``argocd`` target.

    .venv/bin/python bench/bench_answer.py [--runs 20] [--max-rollout 1.5] [--seed 4]

Each run is one deployment through the service's real orchestrator, journal (SQLite) and steps: a
commit of a new version of one model to a file:// GitOps repo, then the pipeline's ``SyncStep`` and
``WaitStep`` (``ArgoCDTarget.sync``, then ``look_ready`` once per look, the step yielding its worker
with ``NotYet`` between looks), against the Argo CD + Kubernetes simulator from ``tests/simulator``.

The simulated kubelet is the ``FakeKubelet`` with one change: each pod gets a loopback IP where a tiny
HTTP server plays the model server (``/health`` 200 at once, ``/ready`` 503 until the "model" has
loaded after a random 0.05 s to ``--max-rollout``), and the kubelet's probes are real HTTP requests
to it. So the rollout takes a random time (the app turns Healthy at a random point of the poll
cycle, as a real one does), and the service's ``/health`` request goes through the simulated load
balancer and kube-proxy to the ready pod. The clock starts when Argo CD's controller writes a status
that a client reads as Synced+Healthy at the commit (reconciled after the sync operation, the rule of
``argocd app wait``) while the Service has its address, and stops when the journal records the
deployment as deployed: pure polling, scheduling and request latency, which the service controls.
The target is at most 2 s. Everything stays on loopback addresses.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import ipaddress
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import renderer
from control_api.adapters.argocd.client import ArgoCDClient
from control_api.adapters.gitops import CommitRequest, GitOpsRepo
from control_api.adapters.kubectl import kustomize_command
from control_api.adapters.kubernetes.services import KubernetesReader
from control_api.journal.store import DeploymentStatus, Journal
from control_api.pipeline.orchestrator import Orchestrator, Pipeline
from control_api.pipeline.outputs import COMMIT
from control_api.pipeline.step import StepContext, StepResult
from control_api.pipeline.steps.sync import SyncStep, WaitStep
from control_api.settings import ArgoCDSettings, GitSettings, KubernetesSettings, Settings, TargetSettings
from control_api.targets.argocd import ArgoCDTarget
from control_api.targets.base import app_ref
from tests.simulator import FakeKubelet, Simulator
from tests.simulator.kube.kubelet import PodRecord, resolve_port

TARGET_SECONDS = 2.0  # from "Healthy + IP" to the journal recording the deploy as finished
MODEL = "bench-answer"
NAMESPACE = "mlops-models"
CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "shared" / "contracts"
# Pod IPs of this bench: loopback, away from the local target (127.0.0.N) and the simulator's load
# balancer pool (127.0.1.N).
POD_NETWORK = ipaddress.IPv4Network("127.0.3.0/24")


class ModelServerStandIn(http.server.BaseHTTPRequestHandler):
    """The model server's probe endpoints: ``/health`` (liveness) answers at once, ``/ready`` only
    once the model has loaded (``server.loaded_at``), as serving_template/model_server does."""

    def do_GET(self) -> None:
        if self.path == "/health":
            status, body = 200, b'{"status":"ok"}'
        elif self.path == "/ready":
            loaded = time.monotonic() >= self.server.loaded_at
            status, body = (200, b'{"status":"ready"}') if loaded else (503, b'{"status":"loading"}')
        else:
            status, body = 404, b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class LoopbackPodKubelet(FakeKubelet):
    """FakeKubelet whose pods have a loopback IP with a model-server stand-in on the container's
    port, and whose probes are real HTTP requests to it. The model loads in a random time."""

    def __init__(self, max_rollout: float, rng: random.Random) -> None:
        super().__init__()
        self._max_rollout = max_rollout
        self._rng = rng
        self._next_host = 0
        self.addresses: list[str] = []

    def _runtime_start_sandbox(self, pod: dict) -> tuple[Any, str]:
        container = pod["spec"]["containers"][0]
        port = resolve_port("http", container)
        for _ in range(POD_NETWORK.num_addresses - 2):
            self._next_host = self._next_host % (POD_NETWORK.num_addresses - 2) + 1
            address = str(POD_NETWORK[self._next_host])
            try:
                server = http.server.ThreadingHTTPServer((address, port), ModelServerStandIn)
            except OSError:
                continue  # still held by an earlier pod's server, or by another process
            server.daemon_threads = True
            server.loaded_at = time.monotonic() + self._rng.uniform(0.05, self._max_rollout)
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name=f"pod-{address}"
            ).start()
            self.addresses.append(address)
            return server, address
        raise RuntimeError(f"no free {POD_NETWORK} address for pod {pod['metadata']['name']}")

    def _runtime_remove_sandbox(self, record: PodRecord) -> None:
        server, record.sandbox = record.sandbox, None
        # shutdown() waits for serve_forever to notice; not on the kubelet's loop.
        threading.Thread(target=lambda: (server.shutdown(), server.server_close()), daemon=True).start()

    def _runtime_http_get(self, record: PodRecord, port: int, path: str, timeout: float) -> str | None:
        url = f"http://{record.pod_ip}:{port}{path}"
        connection = http.client.HTTPConnection(record.pod_ip, port, timeout=timeout)
        try:
            connection.request("GET", path)
            status = connection.getresponse().status
        except OSError as error:
            return f'Get "{url}": {error}'
        finally:
            connection.close()
        return None if 200 <= status < 400 else f"HTTP probe failed with statuscode: {status}"


def reads_ready(application: dict, revision: str) -> bool:
    """Synced and Healthy at ``revision`` as ``argocd app wait`` judges it: no operation pending and
    the controller reconciled the app after the last operation finished."""
    status = application.get("status") or {}
    operation_state = status.get("operationState") or {}
    finished_at = operation_state.get("finishedAt")
    return (
        not application.get("operation")
        and operation_state.get("phase") == "Succeeded"
        and bool(finished_at)
        and (status.get("reconciledAt") or "") >= finished_at
        and (status.get("sync") or {}).get("revision") == revision
        and (status.get("sync") or {}).get("status") == "Synced"
        and (status.get("health") or {}).get("status") == "Healthy"
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def model_files(version: int) -> dict[str, bytes]:
    digest = f"{version:064x}"
    spec = renderer.DeploymentSpec.validated(
        model_name=MODEL,
        namespace=NAMESPACE,
        model_version=str(version),
        image=f"127.0.0.1:5000/mlops/{MODEL}@sha256:{digest}",
        run_id=digest[:32],
        model_uri=f"models:/{MODEL}/{version}",
        deployment_id=f"dep-{version}",
    )
    return renderer.render_model(spec)


class CommitVersion:
    """The commit step of this bench: render one version of the model and commit it (real git)."""

    name = "commit"
    status_label = "committing"
    max_attempts = 1

    def __init__(self, gitops: GitOpsRepo, app_path: str) -> None:
        self.gitops = gitops
        self.app_path = app_path

    def run(self, ctx: StepContext) -> StepResult:
        version = int(ctx.request["version"])
        commit = self.gitops.commit(
            CommitRequest(
                files=model_files(version),
                replace_dirs=(self.app_path,),
                delete_paths=(),
                subject=f"deploy {MODEL} v{version}",
            )
        )
        return StepResult({COMMIT: commit.sha})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--max-rollout", type=float, default=1.5, help="longest simulated model load, seconds")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    if not CONTRACTS_DIR.is_dir():
        raise SystemExit(f"{CONTRACTS_DIR} is missing; check out ../shared beside the repo")
    with tempfile.TemporaryDirectory(prefix="bench-answer-") as scratch:
        run(args, Path(scratch))


def run(args: argparse.Namespace, root: Path) -> None:
    remote = root / "gitops.git"
    kubelet = LoopbackPodKubelet(args.max_rollout, random.Random(args.seed))
    simulator = Simulator(
        kubelet,
        work_dir=root / "simulator",
        kustomize_cmd=kustomize_command(),
        contracts_dir=CONTRACTS_DIR,
        namespaces=[NAMESPACE],
        source_repos=[remote.as_uri()],
    )
    with simulator:
        assert ipaddress.ip_address(simulator.argo_server.host).is_loopback
        settings = Settings(
            data_dir=root,
            git=GitSettings(remote_url=remote.as_uri()),
            argocd=ArgoCDSettings(server_url=simulator.argocd_url, token=simulator.argocd_token),
            kubernetes=KubernetesSettings(api_url=simulator.kubernetes_url, token=simulator.kubernetes_token),
            target=TargetSettings(kind="argocd"),
        )
        gitops = GitOpsRepo(
            settings.git, settings.git_remote_url(), root / "work", initial_files=renderer.render_base()
        )
        gitops.ensure_remote()
        argocd = ArgoCDClient(settings.argocd)
        kubernetes = KubernetesReader(settings.kubernetes)
        journal = Journal(f"sqlite:///{root / 'journal.db'}")
        target = ArgoCDTarget(settings, argocd=lambda: argocd, kubernetes=lambda: kubernetes, gitops=lambda: gitops)
        app = app_ref(NAMESPACE, MODEL)
        pipeline = Pipeline(
            "bench",
            (CommitVersion(gitops, app.path), SyncStep(target=lambda: target), WaitStep(target=lambda: target)),
            DeploymentStatus.DEPLOYED,
        )
        orchestrator = Orchestrator(journal, settings, {"bench": pipeline}, workers=2)

        # The first moment a client's read of the Application shows it ready at the commit, with
        # the Service's address: right after the controller's write of that status.
        healthy_at: dict[str, float] = {}
        store = simulator.argocd.store
        update = store.update

        def update_and_stamp(name: str, mutate: Callable[[dict], None]) -> dict | None:
            updated = update(name, mutate)
            if updated is not None and name == app.application:
                revision = (updated.get("status") or {}).get("sync", {}).get("revision")
                if revision and revision not in healthy_at and reads_ready(updated, revision):
                    service = simulator.cluster.get("Service", NAMESPACE, MODEL) or {}
                    if ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
                        healthy_at[revision] = time.monotonic()
            return updated

        store.update = update_and_stamp

        # The answer: the journal records the deployment as final (what GET /deployments/{id} shows).
        answered_at: dict[str, float] = {}
        finished = threading.Condition()
        set_status = journal.set_status

        def set_status_and_stamp(deployment_id: str, status: str, **kwargs: Any) -> None:
            set_status(deployment_id, status, **kwargs)
            if kwargs.get("finished"):
                with finished:
                    answered_at[deployment_id] = time.monotonic()
                    finished.notify_all()

        journal.set_status = set_status_and_stamp

        answers, totals, address = [], [], None
        try:
            for version in range(1, args.runs + 1):
                record = journal.create(
                    kind="bench",
                    model_name=MODEL,
                    namespace=NAMESPACE,
                    request={"version": version},
                    step_names=[s.name for s in pipeline.steps],
                )
                started = time.monotonic()
                orchestrator.start(record.id)
                with finished:
                    if not finished.wait_for(lambda record_id=record.id: record_id in answered_at, timeout=120):
                        raise SystemExit(f"run {version}: no answer within 120 s")
                done = journal.get(record.id)
                if done.status != DeploymentStatus.DEPLOYED:
                    raise SystemExit(f"run {version}: deployment {done.status}: {done.error}")
                wait = done.step("wait").outputs
                commit = done.step("commit").outputs["commit"]
                address = wait["external_ip"]
                if commit not in healthy_at:
                    raise SystemExit(
                        f"run {version}: deployed, but no status read Synced+Healthy at {commit[:12]} "
                        "with the Service's address first"
                    )
                answers.append(answered_at[record.id] - healthy_at[commit])
                totals.append(answered_at[record.id] - started)
        finally:
            orchestrator.shutdown(wait=True)
            journal.close()
            argocd.close()
            kubernetes.close()
    violations = simulator.checker.violations
    cluster_errors = simulator.cluster.errors

    median, p95 = statistics.median(answers), percentile(answers, 0.95)
    print(
        f"{args.runs} deploys through the orchestrator's sync + wait steps against the simulator "
        f"(model loads 0.05-{args.max_rollout:g} s, /health via {address}:80 to pods on {POD_NETWORK})"
    )
    print(f"  Healthy + IP -> answer (s): median {median:.3f}   p95 {p95:.3f}   max {max(answers):.3f}")
    print(
        f"  commit + sync + wait in all (s): median {statistics.median(totals):.3f}   "
        f"p95 {percentile(totals, 0.95):.3f}"
    )
    print(
        f"  target {TARGET_SECONDS:g} s: p95 is {p95 / TARGET_SECONDS:.2f}x the target "
        f"({'met' if p95 <= TARGET_SECONDS else 'NOT met'})"
    )
    print(
        f"  contract violations: {len(violations)}; simulator errors: {len(cluster_errors)}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
