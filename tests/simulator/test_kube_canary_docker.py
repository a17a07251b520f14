"""A canary with real containers (DockerKubelet): one Service over a stable and a canary Deployment
spreads connections over the ready pods of both, and each canary pod's own ``/metrics`` is read through
the API server's pod proxy, with the kubernetes Python client as the control service will call it."""

from __future__ import annotations

import collections
import urllib.request

import kubernetes.client
import pytest

from tests.simulator.kube_testing import docker_cluster, wait_until

NAMESPACE = "canary"
APP = "iris"
BASE = {"app.kubernetes.io/component": "inference", "app.kubernetes.io/name": APP}
UID = 10001
# Answers / with the pod's hostname (the sandbox's, which is the pod name) and /metrics with a line
# naming the pod and its track, as a Prometheus exposition would.
SERVER = """
import http.server, os, socket
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = socket.gethostname()
        if self.path == "/":
            body, kind = host.encode(), "text/plain"
        elif self.path.split("?")[0] == "/metrics":
            line = 'sim_requests_total{pod="%s",track="%s"} 1\\n' % (host, os.environ["TRACK"])
            body, kind = line.encode(), "text/plain; version=0.0.4; charset=utf-8"
        else:
            body, kind = b"not found", "text/plain"
        self.send_response(200 if body != b"not found" else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""


def deployment(name: str, labels: dict, image: str, replicas: int, track: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(BASE)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID},
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "command": ["python3", "-c", SERVER],
                            "env": [{"name": "TRACK", "value": track}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2},
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "32Mi"},
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                            },
                            "securityContext": {
                                "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


@pytest.fixture(scope="module")
def canary(base_image, contracts_dir):
    with docker_cluster(base_image, contracts_dir, NAMESPACE) as running:
        cluster = running.cluster
        cluster.apply(deployment(APP, BASE, base_image, 1, "stable"))
        cluster.apply(deployment(f"{APP}-canary", {**BASE, "mlops.io/track": "canary"}, base_image, 3, "canary"))
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": APP, "namespace": NAMESPACE},
                "spec": {"type": "LoadBalancer", "selector": dict(BASE), "ports": [{"port": 80, "targetPort": "http"}]},
            }
        )
        wait_until(
            lambda: [d.get("status", {}).get("readyReplicas") for d in cluster.list("Deployment", NAMESPACE)] == [1, 3],
            timeout=90,
            what="1 stable and 3 canary pods ready",
        )
        yield running
        for name in (APP, f"{APP}-canary"):
            cluster.delete("Deployment", NAMESPACE, name)
        cluster.delete("Service", NAMESPACE, APP)
        wait_until(lambda: not cluster.list("Pod", NAMESPACE), timeout=60, what="the pods gone")


def test_a_service_over_two_deployments_spreads_connections_in_proportion_to_their_pods(canary) -> None:
    """N = 400 connections through the LoadBalancer address, stable:canary replicas 1:3. kube-proxy
    (proxy.py) picks a ready endpoint at random per connection, as its iptables mode does, so the
    canary share is binomial around 0.75 with one standard deviation sqrt(0.75 * 0.25 / 400) = 0.022;
    the assertion allows 0.75 +- 0.08 (3.7 deviations), and each pod 100 +- 35 (4 deviations of
    sqrt(400 * 0.25 * 0.75) = 8.7)."""
    cluster = canary.cluster
    service = cluster.get("Service", NAMESPACE, APP)
    address = service["status"]["loadBalancer"]["ingress"][0]["ip"]
    pods = {p["metadata"]["name"]: p["metadata"]["labels"] for p in cluster.list("Pod", NAMESPACE)}
    counts: collections.Counter[str] = collections.Counter()
    total = 400
    for _ in range(total):
        with urllib.request.urlopen(f"http://{address}:80/", timeout=5) as answer:
            counts[answer.read().decode()] += 1
    assert set(counts) == set(pods), (counts, pods)
    canary_share = sum(n for pod, n in counts.items() if pods[pod].get("mlops.io/track") == "canary") / total
    print(f"per pod: {dict(counts)}; canary share {canary_share:.3f}")
    assert abs(canary_share - 0.75) <= 0.08, counts
    assert all(abs(n - total / 4) <= 35 for n in counts.values()), counts


def test_each_canary_pods_own_metrics_through_the_pod_proxy(canary) -> None:
    """``GET /api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/metrics`` reaches that pod (not the
    Service): the body names the pod, the content type is the pod's; the kubernetes client's
    ``connect_get_namespaced_pod_proxy_with_path(name="<pod>:8080", namespace, path="metrics")``
    (which sends ``/pods/<pod>%3A8080/proxy/metrics``) gets the same text."""
    import httpx

    server = canary.server
    configuration = kubernetes.client.Configuration(host=server.url)
    configuration.api_key = {"BearerToken": server.token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    canary_pods = canary.cluster.list("Pod", NAMESPACE, "mlops.io/track=canary")
    assert len(canary_pods) == 3
    with kubernetes.client.ApiClient(configuration) as api_client:
        core = kubernetes.client.CoreV1Api(api_client)
        for pod in canary_pods:
            name = pod["metadata"]["name"]
            expected = f'sim_requests_total{{pod="{name[:63]}",track="canary"}} 1\n'
            answer = httpx.get(
                f"{server.url}/api/v1/namespaces/{NAMESPACE}/pods/{name}:8080/proxy/metrics",
                headers={"Authorization": f"Bearer {server.token}"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.text == expected
            assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert core.connect_get_namespaced_pod_proxy_with_path(f"{name}:8080", NAMESPACE, "metrics") == expected
            # The first declared containerPort when the id names no port.
            assert core.connect_get_namespaced_pod_proxy_with_path(name, NAMESPACE, "metrics") == expected
        missing = httpx.get(
            f"{server.url}/api/v1/namespaces/{NAMESPACE}/pods/{canary_pods[0]['metadata']['name']}:8080/proxy/nothing",
            headers={"Authorization": f"Bearer {server.token}"},
        )
        assert (missing.status_code, missing.text) == (404, "not found")  # the pod's own 404, passed through
        with pytest.raises(kubernetes.client.ApiException) as refused:
            core.connect_get_namespaced_pod_proxy_with_path(
                f"{canary_pods[0]['metadata']['name']}:9", NAMESPACE, "metrics"
            )
        assert refused.value.status == 503
        assert "error trying to reach service: dial tcp" in refused.value.body
        assert "connect: connection refused" in refused.value.body
