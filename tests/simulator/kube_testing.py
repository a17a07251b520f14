"""A simulated cluster with real containers (DockerKubelet) behind its HTTP API, for the tests of
Jobs and of the clients that run them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker

from tests.simulator.contracts import ContractChecker
from tests.simulator.kube import Cluster, DockerKubelet, KubeServer
from tests.simulator.kube.docker_kubelet import LABEL_CLUSTER


@dataclass
class RunningCluster:
    cluster: Cluster
    server: KubeServer
    checker: ContractChecker

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return self.server.token

    def namespace(self, name: str) -> str:
        self.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name


@contextmanager
def docker_cluster(base_image: str, contracts_dir: Path, namespace: str) -> Iterator[RunningCluster]:
    """Cluster + KubeServer with ``namespace`` created; on exit asserts no loop error, no contract
    violation and no container left."""
    checker = ContractChecker(contracts_dir)
    kubelet = DockerKubelet(probe_period_scale=0.1, sandbox_image=base_image)
    with Cluster(kubelet, checker=checker, controller_period=0.1) as cluster, KubeServer(cluster) as server:
        running = RunningCluster(cluster, server, checker)
        running.namespace(namespace)
        yield running
        assert cluster.errors == []
    assert checker.violations == []
    client = docker.from_env()
    try:
        assert client.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster.id}"}) == []
    finally:
        client.close()


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
