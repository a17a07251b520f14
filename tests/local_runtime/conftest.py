"""A tiny test server image and a runtime whose workloads are cleaned up after each test.

The server follows the model server's contract with the runtime: listen on HOST:PORT (with
SO_REUSEPORT when REUSE_PORT=1) once ready, answer /ready and /health. Extra env switches make it slow
(READY_DELAY, before it binds), slow to stop (SLOW_STOP, after SIGTERM), never ready (NEVER_READY:
/ready answers 503), crash (EXIT_CODE) or write a file where it is told (WRITE_TO, before it binds).
MODEL_PICKLE_B64 is a pickled model it loads at start as the model server loads a pickled estimator;
POST /predict calls its
``predict(body)`` and answers what that returns.
"""

import contextlib
import io
import tarfile
import uuid

import pytest

from control_api.adapters.local_runtime.docker_runtime import L_NAMESPACE, DockerLocalRuntime
from control_api.settings import TargetSettings
from tests.support.local_runtime import TEST_LOOPBACK_FIRST, TEST_NAMESPACE_PREFIX

SERVER_SOURCE = r"""
import base64, http.server, json, os, pathlib, pickle, signal, socket, sys, threading, time, uuid

INSTANCE = uuid.uuid4().hex  # replicas may share a hostname and pid 1

if os.environ.get("EXIT_CODE"):
    print("test server: crashing on purpose", flush=True)
    sys.exit(int(os.environ["EXIT_CODE"]))
if os.environ.get("WRITE_TO"):
    pathlib.Path(os.environ["WRITE_TO"]).write_text("written at start")
MODEL = pickle.loads(base64.b64decode(os.environ["MODEL_PICKLE_B64"])) if os.environ.get("MODEL_PICKLE_B64") else None
time.sleep(float(os.environ.get("READY_DELAY", "0")))

class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = False  # server_close() waits for the requests in flight
    def server_bind(self):
        if os.environ.get("REUSE_PORT") == "1":
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/ready" and os.environ.get("NEVER_READY"):
            return self.answer(503, {"ready": False})
        self.answer(200, {"version": os.environ.get("VERSION", ""), "instance": INSTANCE, "path": self.path})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
        self.answer(200, {"predictions": MODEL.predict(body), "version": os.environ.get("VERSION", "")})
    def log_message(self, *args):
        pass

server = Server((os.environ["HOST"], int(os.environ["PORT"])), Handler)
if not os.environ.get("NEVER_READY") and os.environ.get("READY_FILE"):
    pathlib.Path(os.environ["READY_FILE"]).touch()
# SIGTERM: stop accepting, finish the requests in flight, exit (as the model server's uvicorn does);
# SLOW_STOP seconds later, like a server whose requests in flight take that long.
def stop(*_):
    time.sleep(float(os.environ.get("SLOW_STOP", "0")))
    server.shutdown()
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stop).start())
print("test server: listening", flush=True)
server.serve_forever()
server.server_close()
"""


@pytest.fixture(scope="session")
def test_server_image(base_image):
    import docker

    client = docker.from_env(timeout=300)
    dockerfile = f'FROM {base_image}\nCOPY server.py /server.py\nCMD ["python3", "-u", "/server.py"]\n'
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        for name, text in {"Dockerfile": dockerfile, "server.py": SERVER_SOURCE}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    context.seek(0)
    tag = f"mlops-test/runtime-server:{uuid.uuid4().hex[:8]}"
    image, _ = client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, pull=False)
    yield tag
    # The image may still be used by a container another test leaked; the cleanup below reports it.
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(image.id, force=True)
    client.close()


@pytest.fixture
def runtime_settings() -> TargetSettings:
    return TargetSettings(loopback_first=TEST_LOOPBACK_FIRST)


@pytest.fixture
def runtime(docker_client, runtime_settings):
    import docker

    runtime = DockerLocalRuntime(runtime_settings)
    yield runtime
    # Replicas a test left terminating are removed by the runtime's reapers (another instance's too,
    # meanwhile): one gone between listing and removing is no leak.
    runtime.wait_retired(timeout=60)
    for container in docker_client.containers.list(all=True, filters={"label": L_NAMESPACE}):
        if container.labels.get(L_NAMESPACE, "").startswith(TEST_NAMESPACE_PREFIX):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


@pytest.fixture
def namespace() -> str:
    return f"{TEST_NAMESPACE_PREFIX}{uuid.uuid4().hex[:6]}"
