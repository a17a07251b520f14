"""The Kubernetes half of the simulator: an API server store, controllers, a kubelet (Docker or fake),
kube-proxy for LoadBalancer Services, and an HTTP API serving the read endpoints clients use."""

from tests.simulator.kube.cluster import Cluster
from tests.simulator.kube.docker_kubelet import DockerKubelet
from tests.simulator.kube.faults import KubeFaults
from tests.simulator.kube.kubelet import FakeKubelet, Kubelet
from tests.simulator.kube.server import KubeServer
from tests.simulator.kube.store import KubeError

__all__ = ["Cluster", "DockerKubelet", "FakeKubelet", "KubeError", "KubeFaults", "KubeServer", "Kubelet"]
