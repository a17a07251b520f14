"""A hostile pickled model, deployed through the local runtime, cannot reach the control API, the
registry or another model, and cannot take over another model's address.

The model is the test server image's pickled-model path (it unpickles MODEL_PICKLE_B64 at start, as
the model server unpickles an estimator), so this costs no image build beyond the shared test image.
Unpickling runs the attacker's code; its ``predict`` opens the sockets it is asked to and reports
what answered.
"""

from __future__ import annotations

import base64
import http.server
import pickle
import threading

import httpx
import pytest

from control_api.adapters.local_runtime.containment import MODEL_NETWORK
from tests.support.local_runtime import answer, network_holder, spec_for

HOSTILE_SOURCE = r'''
import socket, struct, threading

HELD = []


def gateway():
    with open("/proc/net/route") as handle:
        for line in handle.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
    return "no-gateway"


def attempt(host, port):
    try:
        connection = socket.create_connection((host, port), timeout=3)
    except OSError as exc:
        return "failed: %s %s" % (type(exc).__name__, exc)
    try:
        connection.settimeout(3)
        connection.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        first_bytes = connection.recv(200).decode("latin-1")
    except OSError as exc:
        first_bytes = "(connected, then %s)" % type(exc).__name__
    finally:
        connection.close()
    return "reached: " + first_bytes[:120]


def squat(address, port):
    """Listen on another model's address with SO_REUSEPORT and answer as if it were that model."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(64)
    HELD.append(sock)

    def serve():
        while True:
            client, _ = sock.accept()
            client.recv(1024)
            body = b'{"version": "hijacked", "instance": "hostile"}'
            head = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            client.sendall(head + body)
            client.close()

    threading.Thread(target=serve, daemon=True).start()
    return "listening on %s:%d" % (address, port)


class Model:
    def predict(self, request):
        report = {}
        gateway_address = gateway()
        report["gateway"] = gateway_address

        def run(label, host, port):
            report[label] = attempt(host.replace("GATEWAY", gateway_address), port)

        threads = [threading.Thread(target=run, args=target) for target in request.get("connect", [])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for address, port in request.get("squat", []):
            try:
                report["squat %s:%d" % (address, port)] = squat(address, port)
            except OSError as exc:
                report["squat %s:%d" % (address, port)] = "failed: %s" % exc
        return report
'''


class HostilePickle:
    """Unpickles to ``Model()`` from HOSTILE_SOURCE, running that source on the way (only builtins needed)."""

    def __reduce__(self):
        return eval, (f"(lambda ns: (exec({HOSTILE_SOURCE!r}, ns), ns['Model']())[1])({{}})",)


@pytest.fixture
def control_api_canary():
    """Stands in for the control API: an HTTP server on the host's loopback, as the service binds by default."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"control-api canary"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_hostile_model_reaches_nothing_and_cannot_take_another_models_address(
    runtime, test_server_image, namespace, docker_client, control_api_canary, registry_url
):
    victim = runtime.apply(
        spec_for(test_server_image, namespace, name="victim", replicas=2, env={"VERSION": "victim"}), ready_timeout=60
    )
    victim_instances = {answer(victim.url)["instance"] for _ in range(30)}
    victim_holder = network_holder(docker_client, namespace, "victim")
    victim_container_ip = victim_holder.attrs["NetworkSettings"]["Networks"][MODEL_NETWORK]["IPAddress"]
    hostile_pickle = base64.b64encode(pickle.dumps(HostilePickle())).decode()
    hostile = runtime.apply(
        spec_for(
            test_server_image, namespace, name="hostile", env={"VERSION": "hostile", "MODEL_PICKLE_B64": hostile_pickle}
        ),
        ready_timeout=60,
    )
    registry_port = int(registry_url.rsplit(":", 1)[1])
    # The canary and the registry do answer on the host: a failure from the container is containment.
    assert httpx.get(f"http://127.0.0.1:{control_api_canary}/", timeout=5).text == "control-api canary"
    assert httpx.get(f"http://{registry_url}/v2/_catalog", timeout=5).status_code in (200, 401)
    targets = {
        "own server": ("127.0.0.1", 8080),
        "control API on the host's loopback": ("127.0.0.1", control_api_canary),
        "control API through the gateway": ("GATEWAY", control_api_canary),
        "control API default port on loopback": ("127.0.0.1", 8000),
        "control API default port through the gateway": ("GATEWAY", 8000),
        "registry on the host's loopback": ("127.0.0.1", registry_port),
        "registry through the gateway": ("GATEWAY", registry_port),
        "other model's address": (victim.address, 80),
        "other model's port through the gateway": ("GATEWAY", 80),
        "other model's container address": (victim_container_ip, 8080),
    }

    response = httpx.post(
        hostile.url + "/predict",
        json={
            "connect": [[label, host, port] for label, (host, port) in targets.items()],
            "squat": [[victim.address, 80]],
        },
        timeout=60,
    )

    assert response.status_code == 200, response.text
    report = response.json()["predictions"]
    assert report["gateway"].count(".") == 3
    # The attempts do work where something is reachable: the model's own server answers it.
    assert report.pop("own server").startswith("reached: HTTP/1.0 200")
    reached = {
        label: outcome for label, outcome in report.items() if label in targets and not outcome.startswith("failed")
    }
    assert reached == {}
    assert set(report) >= set(targets) - {"own server"}
    # Binding the other model's address succeeds only inside the hostile model's own namespace: every
    # request to that address still reaches the victim's replicas.
    assert report[f"squat {victim.address}:80"] == f"listening on {victim.address}:80"
    answers = [answer(victim.url) for _ in range(40)]
    assert {a["version"] for a in answers} == {"victim"}
    assert {a["instance"] for a in answers} <= victim_instances
    assert answer(hostile.url)["version"] == "hostile"
