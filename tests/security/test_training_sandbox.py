"""Hostile training scripts against the training sandbox.

One real control service process (``python -m control_api serve``, sandbox required, low limits set
through settings) receives a fork bomb, a memory hog, a huge file, a credential thief and a script that
leaves a detached (double-forked, setsid) child behind. Each deploy fails with a status that names the
limit or shows that nothing was found, and afterwards the service still answers /health and /ready and a
normal deploy registers a model. An infinite loop runs on a second, in-process service with a 2 s
timeout.

The service's environment, its home directory (~/.aws, ~/.docker/config.json, git credentials), its API
keys file and a Docker-socket stand-in all hold a canary. Every hostile script is bounded, so that if a
protection is removed the test fails on the script's own "NO ... LIMIT" exit instead of hurting the
machine. The scripts are stdlib only (the environment holds just MLflow) to keep the module fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from control_api.settings import Settings
from control_api.training import sandbox as sandboxing
from tests.support.control import script
from tests.support.sandbox import require_sandbox
from tests.support.service_process import ServiceProcess

CANARY = "CANARY-" + secrets.token_hex(16)
API_KEY = "mlk_" + secrets.token_urlsafe(24)
HEADERS = {"X-API-Key": API_KEY}
MAX_PROCESSES = 48
MAX_FILE_BYTES = 16 * 2**20
MAX_MEMORY_BYTES = 1536 * 2**20
WORKDIR_BYTES = 40 * 2**20
FIRST_UID = Settings().training.sandbox_uid_first


class FakeDockerSocket:
    """A unix socket that answers every connection with the canary, like a Docker API would answer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o660)  # root:root rw-rw----, as /var/run/docker.sock is root:docker
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(4096)
                conn.sendall(f'HTTP/1.0 200 OK\r\n\r\n{{"ApiVersion": "1.45", "token": "{CANARY}"}}'.encode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def box(tmp_path_factory, venv_cache):
    """The control service as a real process, with canaries in its environment and its files."""
    require_sandbox()
    base = tmp_path_factory.mktemp("sandbox")
    home = base / "service-home"
    for relative, content in {
        ".aws/credentials": f"[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = {CANARY}\n",
        ".docker/config.json": json.dumps({"auths": {"registry.example": {"auth": CANARY}}}),
        ".git-credentials": f"https://mlops:{CANARY}@git.example\n",
        ".config/git/credentials": f"https://mlops:{CANARY}@git.example\n",
    }.items():
        path = home / relative
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(content)
        path.chmod(0o600)
    data = base / "data"
    data.mkdir()
    key_hash = hashlib.sha256(API_KEY.encode()).hexdigest()
    (data / "api-keys.json").write_text(
        json.dumps([{"name": "sandbox-test", "role": "admin", "key_hash": f"sha256:{key_hash}"}])
    )
    (data / "api-keys.json").chmod(0o600)
    docker = FakeDockerSocket(base / "docker.sock")
    env = {
        "HOME": str(home),
        "MLOPS_DATA_DIR": str(data),
        "MLOPS_TARGET__KIND": "none",
        "MLOPS_TRAINING__VENV_CACHE_DIR": str(venv_cache),
        "MLOPS_TRAINING__SANDBOX": "required",
        "MLOPS_TRAINING__TIMEOUT_SECONDS": "300",
        "MLOPS_TRAINING__MAX_PROCESSES": str(MAX_PROCESSES),
        "MLOPS_TRAINING__MAX_FILE_BYTES": str(MAX_FILE_BYTES),
        "MLOPS_TRAINING__MAX_MEMORY_BYTES": str(MAX_MEMORY_BYTES),
        "MLOPS_TRAINING__WORKDIR_BYTES": str(WORKDIR_BYTES),
        "MLOPS_BUILD__DOCKER_HOST": f"unix://{base / 'docker.sock'}",
        # Credentials in the service's own environment.
        "MLOPS_GIT__TOKEN": CANARY,
        "MLOPS_REGISTRY__PASSWORD": CANARY,
        "AWS_SECRET_ACCESS_KEY": CANARY,
    }
    service = ServiceProcess(env, base / "service.log").start()
    service.base, service.home, service.data, service.key_hash = base, home, data, key_hash
    try:
        yield service
    finally:
        service.stop()
        docker.close()


def deploy(service: ServiceProcess, model_name: str, body: str) -> dict:
    response = httpx.post(
        f"{service.url}/mlops/deploy",
        headers=HEADERS,
        timeout=600,
        json={"model_name": model_name, "script_content": script(body)},
    )
    assert response.status_code == 200, response.text
    return response.json()


def get(service: ServiceProcess, path: str) -> httpx.Response:
    return httpx.get(f"{service.url}{path}", headers=HEADERS, timeout=300)


def outputs(service: ServiceProcess, deployment: dict) -> tuple[str, str]:
    """The script's stdout and stderr, as the service kept them."""
    run_id = deployment["run_id"] or deployment["error"]["details"]["run_id"]
    folder = service.data / "work" / deployment["deployment_id"]
    return (folder / f"{run_id}.stdout.log").read_text(), (folder / f"{run_id}.stderr.log").read_text()


def assert_still_healthy(service: ServiceProcess) -> None:
    assert httpx.get(f"{service.url}/health", timeout=60).status_code == 200
    assert get(service, "/ready").status_code == 200


def assert_failed_in_train(deployment: dict, code: str) -> str:
    assert deployment["status"] == "failed", deployment
    assert deployment["error"]["step"] == "train"
    assert deployment["error"]["code"] == code, deployment["error"]
    return deployment["error"]["message"]


def test_status_reports_the_sandbox(box):
    component = get(box, "/mlops/status").json()["components"]["training_sandbox"]
    assert component["status"] == "healthy", component
    assert component["detail"].startswith("required: sandboxed"), component


def test_fork_bomb_meets_the_process_limit(box):
    body = deploy(
        box,
        "fork-bomb",
        """
        import os, sys, time
        children = 0
        try:
            for _ in range(400):
                if os.fork() == 0:
                    time.sleep(120)
                    os._exit(0)
                children += 1
        finally:
            print(f"forked {children} children", flush=True)
        print("NO PROCESS LIMIT", flush=True)
        sys.exit(3)
    """,
    )
    message = assert_failed_in_train(body, "training_failed")
    assert "process limit: at most 48 processes" in message, message
    assert "Resource temporarily unavailable" in message, message
    stdout, _ = outputs(box, body)
    forked = int(re.search(r"forked (\d+) children", stdout).group(1))
    assert 0 < forked < MAX_PROCESSES, stdout
    assert_still_healthy(box)


def test_memory_hog_is_stopped_by_the_memory_limit(box):
    body = deploy(
        box,
        "memory-hog",
        """
        import sys
        hog = []
        for _ in range(64):  # up to 4 GiB of (untouched) memory, 64 MiB at a time
            hog.append(bytes(64 * 2**20))
        print("NO MEMORY LIMIT", flush=True)
        sys.exit(3)
    """,
    )
    message = assert_failed_in_train(body, "training_failed")
    assert "ran out of memory: the limit is 1.5 GiB of address space" in message, message
    assert "MemoryError" in message
    assert_still_healthy(box)


def test_huge_file_meets_the_file_size_limit(box):
    body = deploy(
        box,
        "huge-file",
        """
        import sys
        with open("huge.bin", "wb") as f:
            for _ in range(64):  # 64 MiB
                f.write(bytes(2**20))
                f.flush()
        print("NO FILE SIZE LIMIT", flush=True)
        sys.exit(3)
    """,
    )
    message = assert_failed_in_train(body, "training_failed")
    assert "file size limit: no file may exceed 16 MiB" in message, message
    assert "File too large" in message
    workdir = box.data / "work" / body["deployment_id"] / body["error"]["details"]["run_id"]
    assert not workdir.exists()  # the working folder went with the training
    assert_still_healthy(box)


def test_many_files_fill_only_the_working_folder(box):
    body = deploy(
        box,
        "many-files",
        """
        import os, sys
        written = 0
        try:
            for i in range(8):  # 8 x 15 MiB: each under the file size limit, together over the folder's size
                with open(f"part-{i}.bin", "wb") as f:
                    for _ in range(15):
                        f.write(bytes(2**20))
                        f.flush()
                        written += 2**20
        finally:
            print("wrote", written // 2**20, "MiB", flush=True)
        print("NO WORKING FOLDER LIMIT", flush=True)
        sys.exit(3)
    """,
    )
    message = assert_failed_in_train(body, "training_failed")
    assert "filled its working folder: at most 40 MiB" in message, message
    stdout, _ = outputs(box, body)
    assert int(re.search(r"wrote (\d+) MiB", stdout).group(1)) <= WORKDIR_BYTES // 2**20, stdout
    assert not (box.data / "work" / body["deployment_id"] / body["error"]["details"]["run_id"]).exists()
    assert_still_healthy(box)


def test_credentials_the_service_environment_and_network_are_out_of_reach(box):
    targets = [
        box.home / ".aws" / "credentials",
        box.home / ".docker" / "config.json",
        box.home / ".git-credentials",
        box.home / ".config" / "git" / "credentials",
        box.data / "api-keys.json",
        box.data / "journal.db",
        Path(f"/proc/{box.proc.pid}/environ"),
    ]
    sockets = [box.base / "docker.sock", Path("/var/run/docker.sock")]
    body = deploy(
        box,
        "thief",
        f"""
        import os, re, socket, sys
        pattern = re.compile(rb"CANARY-[0-9a-f]{{32}}")
        print("SCRIPT RAN as uid", os.getuid(), "in", os.getcwd(), flush=True)
        print("own script:", len(open(sys.argv[0], "rb").read()), "bytes", flush=True)
        for path in {[str(p) for p in targets]!r}:
            try:
                with open(path, "rb") as f:
                    data = f.read()
                print("READ", path, len(data), "bytes:", data[:300], flush=True)
            except OSError as exc:
                print("no access to", path, "-", type(exc).__name__, flush=True)
        for path in {[str(p) for p in sockets]!r}:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(5)
                s.connect(path)
                s.sendall(b"GET /version HTTP/1.0\\r\\n\\r\\n")
                print("CONNECTED", path, s.recv(4096), flush=True)
            except OSError as exc:
                print("no access to", path, "-", type(exc).__name__, flush=True)
        try:  # the control service's own API, on the host's loopback
            s = socket.create_connection(("127.0.0.1", {box.port}), timeout=5)
            s.sendall(b"GET /health HTTP/1.0\\r\\n\\r\\n")
            print("CONNECTED to the service:", s.recv(4096), flush=True)
        except OSError as exc:
            print("no access to 127.0.0.1:{box.port} -", type(exc).__name__, flush=True)
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        print("visible processes:", len(pids), flush=True)
        for pid in pids:
            for name in ("environ", "cmdline"):
                try:
                    with open(f"/proc/{{pid}}/{{name}}", "rb") as f:
                        for found in pattern.findall(f.read()):
                            print("FOUND in", pid, name, found, flush=True)
                except OSError:
                    pass
        for found in pattern.findall("\\n".join(f"{{k}}={{v}}" for k, v in os.environ.items()).encode()):
            print("FOUND in my environment", found, flush=True)
    """,
    )
    message = assert_failed_in_train(body, "no_model_logged")
    stdout, stderr = outputs(box, body)
    # Control: the script ran, as a sandbox uid, and could read its own file.
    match = re.search(r"SCRIPT RAN as uid (\d+)", stdout)
    assert match and FIRST_UID <= int(match.group(1)) < FIRST_UID + 256, stdout
    assert re.search(r"own script: \d+ bytes", stdout), stdout
    for path in targets + sockets:
        assert f"no access to {path}" in stdout, stdout
    assert f"no access to 127.0.0.1:{box.port}" in stdout, stdout  # a network namespace of its own
    assert "READ" not in stdout and "CONNECTED" not in stdout and "FOUND" not in stdout, stdout
    # Nowhere: not in what the script printed, not in the step message, not in anything it wrote.
    assert CANARY not in stdout + stderr + message
    assert box.key_hash not in stdout + stderr
    for path in box.data.rglob("*"):
        if path.is_file() and path.name != "api-keys.json":
            content = path.read_bytes()
            assert CANARY.encode() not in content, path
            assert box.key_hash.encode() not in content, path
    assert_still_healthy(box)


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _gone(marker: str, grace: float = 10.0) -> bool:
    deadline = time.monotonic() + grace
    while _processes_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_detached_child_dies_with_the_script(box):
    marker = "detached-" + secrets.token_hex(8)
    body = deploy(
        box,
        "detached",
        f"""
        import os, sys, time
        if os.fork() == 0:
            os.setsid()  # a new session: out of the script's process group
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c",
                    "import pathlib, time; pathlib.Path('alive').touch(); time.sleep(300)", {marker!r}])
            os._exit(0)
        os.wait()
        while not os.path.exists("alive"):
            time.sleep(0.05)
        print("grandchild detached and alive", flush=True)
        sys.exit(1)
    """,
    )
    try:
        assert_failed_in_train(body, "training_failed")
        stdout, _ = outputs(box, body)
        assert "grandchild detached and alive" in stdout, stdout
        assert _gone(marker), "the detached grandchild outlived the training"
    finally:
        for pid in _processes_with(marker):  # only if the protection failed
            os.kill(pid, 9)
    assert_still_healthy(box)


def test_after_the_hostile_scripts_a_normal_deploy_registers(box):
    body = deploy(
        box,
        "normal-after-hostile",
        """
        import mlflow

        class Echo(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input

        with mlflow.start_run():
            mlflow.log_param("kind", "echo")
            mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    """,
    )
    assert body["status"] == "registered", body
    assert body["model_version"] == "1"
    # The script logged the model through its tracking door: the service wrote it into the store.
    model_dirs = list((box.data / "mlflow" / "artifacts").glob("normal-after-hostile/models/m-*"))
    assert len(model_dirs) == 1
    assert (model_dirs[0] / "artifacts" / "MLmodel").stat().st_uid == os.getuid()
    model = get(box, "/mlops/models/normal-after-hostile").json()
    assert model["latest_version"] == "1"
    assert_still_healthy(box)


def test_infinite_loop_times_out_and_is_killed(make_client):
    require_sandbox()
    client = make_client(training={"timeout_seconds": 2, "sandbox": "required"})
    body = client.post(
        "/mlops/deploy",
        json={
            "model_name": "spin",
            "script_content": script("""
        while True:
            pass
    """),
        },
    ).json()
    message = assert_failed_in_train(body, "training_timeout")
    assert "within 2 s" in message
    run_id = body["error"]["details"]["run_id"] if body["error"].get("details") else None
    workdir_marker = f"/work/{body['deployment_id']}/"
    assert _gone(workdir_marker), "the spinning script outlived its timeout"
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    assert run_id is None or client.app.state.services.mlflow.get_run(run_id).info.status == "FAILED"


def test_training_dies_with_the_service(box):
    """Last: SIGKILL the service in the middle of a training; nothing of the script may survive it."""
    response = httpx.post(
        f"{box.url}/mlops/deploy",
        params={"wait": "false"},
        headers=HEADERS,
        timeout=60,
        json={
            "model_name": "orphan",
            "script_content": script("""
            import os, time
            if os.fork() == 0:
                os.setsid()
                time.sleep(600)
            time.sleep(600)
        """),
        },
    )
    assert response.status_code in (200, 202), response.text
    marker = f"/work/{response.json()['deployment_id']}/"
    deadline = time.monotonic() + 300
    while len(_processes_with(marker)) < 2:  # the script and its detached child
        assert time.monotonic() < deadline, "the training never started"
        time.sleep(0.2)
    box.kill()
    assert _gone(marker), "the training outlived the service"


UNAVAILABLE = sandboxing.Availability(False, "test: namespaces refused")


def test_required_sandbox_that_cannot_work_refuses_to_train(make_client, monkeypatch):
    monkeypatch.setattr(sandboxing, "_probe_result", UNAVAILABLE)
    client = make_client(training={"sandbox": "required"})
    body = client.post(
        "/mlops/deploy", json={"model_name": "no-sandbox", "script_content": script("print('ran')\n")}
    ).json()
    message = assert_failed_in_train(body, "training_sandbox_unavailable")
    assert "test: namespaces refused" in message and "MLOPS_TRAINING__SANDBOX=auto" in message
    # Refused before anything was created: no experiment, no run, no working directory.
    mlflow = client.app.state.services.mlflow.client
    assert mlflow.get_experiment_by_name("no-sandbox") is None
    assert not (client.app.state.services.settings.data_path / "work" / body["deployment_id"]).exists()
    status = client.get("/mlops/status")
    assert status.status_code == 503
    component = status.json()["components"]["training_sandbox"]
    assert component["status"] == "unhealthy" and "test: namespaces refused" in component["error"]


def test_auto_without_a_sandbox_degrades_and_says_so(make_client, monkeypatch):
    monkeypatch.setattr(sandboxing, "_probe_result", UNAVAILABLE)
    client = make_client(training={"sandbox": "auto"})
    body = client.post(
        "/mlops/deploy",
        json={
            "model_name": "degraded",
            "script_content": script("""
        import os
        print("ran as uid", os.getuid(), flush=True)
    """),
        },
    ).json()
    assert_failed_in_train(body, "no_model_logged")
    lines = [
        e["data"]["line"] for e in client.app.state.services.journal.events(body["deployment_id"]) if e["type"] == "log"
    ]
    assert any(line.startswith("training sandbox unavailable (test: namespaces refused)") for line in lines), lines
    assert f"ran as uid {os.getuid()}" in lines
    component = client.get("/mlops/status").json()["components"]["training_sandbox"]
    assert component["status"] == "healthy"
    assert component["detail"].startswith("degraded: test: namespaces refused")
