"""Canary secrets appear in no git commit, no log line and no error body.

Every secret-typed setting (every ``SecretStr`` field of ``Settings``, found by walking the model, so
a new one is covered without touching this file) and every credential a URL setting can carry gets
a distinct canary value. Real deploys then run with those settings, through the failure paths that
tend to leak: a registry that refuses (and echoes) the credentials, a git remote that refuses the
token (with the token in the remote URL), Argo CD refusing the session, MLflow going away, hostile
remotes that echo whatever credentials they were sent, and a training script that prints its whole
environment. Afterwards every surface is scanned for every canary (raw, and inside an HTTP Basic
credential):

- every log record of every logger at DEBUG (caplog) and everything written to fds 1 and 2 (capfd);
- every API response body (deploy, deployments, events/SSE, status, metrics, models, history, errors);
- the journal database (every table, dumped);
- every file under the service's data dir (training logs included) and the MLflow server's artifacts
  and database;
- every object of every git repository involved (the remote, the service's clone, the simulated
  Argo CD's mirror: ``git log -p --all`` plus every blob, reachable or not) and their configs;
- the built and pushed images' configuration and history.

``environment_vars`` are rendered into the GitOps manifests by design, so canaries placed there under
credential-looking names or shapes must be refused with a 422 that does not echo them, and nothing
stored; secrets go through ``secret_env`` (Kubernetes Secret references), whose manifests carry the
reference and never a value.

The scanner itself is tested on planted canaries, and each scenario checks that the secrets really
travelled (the hostile servers saw them, the training log shows the masked URL), so a scan that
finds nothing means something.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import typing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, SecretStr
from ruamel.yaml import YAML

from control_api.api.security import hash_key
from control_api.app import create_app
from control_api.settings import Settings
from tests.support.control import assert_error_format, b64, make_settings
from tests.support.mlflow_server import MlflowServer
from tests.support.ports import free_port

FINAL = {"deployed", "failed", "timed_out", "registered", "undeployed"}
# Users under which a canary could travel inside an HTTP Basic credential.
BASIC_USERS = ("x-access-token", "oauth2", "git", "token", "", "admin", "canary-registry-user", "mlflow-user")

TRAIN_PRINTING_ITS_ENVIRONMENT = textwrap.dedent(
    """
    import os, sys

    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    # A careless script: its whole environment on stdout and stderr.
    for key, value in sorted(os.environ.items()):
        print(f"env {key}={value}")
        print(f"env {key}={value}", file=sys.stderr)
    X, y = load_iris(return_X_y=True, as_frame=True)
    with mlflow.start_run():
        model = LogisticRegression(max_iter=300).fit(X, y)
        mlflow.log_param("max_iter", 300)
        mlflow.sklearn.log_model(model, name="model", input_example=X.head(2))
    print("tracking uri as mlflow sees it:", mlflow.get_tracking_uri())
    """
)


# ---- canaries --------------------------------------------------------------------------------------


def secret_setting_paths(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Dotted paths of every SecretStr field in the settings tree (``registry.password`` ...)."""
    paths = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        candidates = typing.get_args(annotation) or (annotation,)
        if SecretStr in candidates:
            paths.append(prefix + name)
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                paths += secret_setting_paths(candidate, f"{prefix}{name}.")
    return paths


def new_canary(label: str) -> str:
    return f"canary-{label.replace('.', '-').replace('_', '-')}-{secrets.token_hex(8)}"


def canary_settings(canaries: dict[str, str]) -> dict[str, dict[str, str]]:
    """Settings overrides that put each SecretStr canary in its place."""
    overrides: dict[str, Any] = {}
    for path in secret_setting_paths():
        *sections, name = path.split(".")
        node = overrides
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = canaries[path]
    return overrides


def merge(*layers: dict) -> dict:
    merged: dict = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


# ---- the scanner -----------------------------------------------------------------------------------


@dataclass
class Leak:
    where: str
    canary: str
    excerpt: str


@dataclass
class CanaryScanner:
    canaries: dict[str, str]  # label -> value
    leaks: list[Leak] = field(default_factory=list)
    surfaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.forms: dict[str, str] = {}
        for label, value in self.canaries.items():
            self.forms[value] = label
            for user in BASIC_USERS:
                self.forms[base64.b64encode(f"{user}:{value}".encode()).decode()] = f"{label} (HTTP Basic as {user!r})"

    def text(self, where: str, text: str | bytes | None) -> None:
        if text is None:
            return
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        self.surfaces.append(where)
        for form, label in self.forms.items():
            index = text.find(form)
            if index >= 0:
                excerpt = text[max(0, index - 120) : index + len(form) + 40].replace("\n", "\\n")
                self.leaks.append(Leak(where, label, excerpt))

    def files(self, where: str, root: Path) -> None:
        """Every file under ``root``, raw (git objects are compressed: :meth:`git` reads those)."""
        if not root.exists():
            return
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                self.text(f"{where}:{path.relative_to(root)}", path.read_bytes())

    def git(self, where: str, git_dir: Path) -> None:
        """The whole history (``git log -p --all``) and every object in the repository, reachable or not."""
        if not git_dir.exists():
            return

        def run(*args: str) -> bytes:
            return subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True, check=True).stdout

        self.text(f"{where}: git log -p --all", run("log", "-p", "--all", "--format=fuller", "--decorate"))
        self.text(f"{where}: every object", run("cat-file", "--batch-all-objects", "--batch", "--unordered"))
        # config, refs, packed-refs, reflogs, FETCH_HEAD ...: everything but the (compressed) objects.
        for path in sorted(git_dir.rglob("*")):
            if path.is_file() and "objects" not in path.relative_to(git_dir).parts[:1]:
                self.text(f"{where}: {path.relative_to(git_dir)}", path.read_bytes())

    def sqlite(self, where: str, db_path: Path) -> None:
        connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            assert tables, f"{db_path} has no tables"
            self.text(f"{where}: dump of {', '.join(tables)}", "\n".join(connection.iterdump()))
        finally:
            connection.close()

    def logs(self, caplog: pytest.LogCaptureFixture) -> None:
        self.text("log records (caplog.text)", caplog.text)
        for record in caplog.records:
            self.text(f"log record {record.name}", record.getMessage() + "\n" + (record.exc_text or ""))

    def report(self) -> str:
        return "\n".join(f"- {leak.canary} in {leak.where}: ...{leak.excerpt}..." for leak in self.leaks)

    def assert_clean(self) -> None:
        assert self.surfaces, "nothing was scanned"
        assert not self.leaks, f"{len(self.leaks)} canary leak(s):\n{self.report()}"


# ---- hostile and fake remotes ----------------------------------------------------------------------


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return body
            body += handler.rfile.read(size)
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _credentials_of(handler: BaseHTTPRequestHandler) -> str:
    header = handler.headers.get("Authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            return "basic " + base64.b64decode(value).decode()
        except Exception:
            return header
    return header


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _echo_401(handler: BaseHTTPRequestHandler, received: list[str], body: bytes) -> None:
    """What a careless server does: refuse, and repeat in the error what it was sent."""
    credentials = _credentials_of(handler)
    sent = body[:400].decode("utf-8", "replace")
    text = f"credentials [{credentials}] refused for {handler.command} {handler.path}; request body [{sent}]"
    received.append(text)
    payload = json.dumps(
        {
            "message": text,
            "error": text,
            "error_code": "UNAUTHENTICATED",
            "errors": [{"code": "UNAUTHORIZED", "message": text, "detail": credentials}],
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "Unauthorized",
            "code": 401,
        }
    ).encode()
    handler.send_response(401)
    handler.send_header("WWW-Authenticate", 'Basic realm="echo"')
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


class EchoServer:
    """Answers every request 401 and echoes the credentials it received (Basic decoded, Bearer, JSON body)."""

    def __init__(self) -> None:
        self.received: list[str] = []
        server = self

        class Handler(_QuietHandler):
            def _any(self) -> None:
                _echo_401(self, server.received, _read_body(self))

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def saw(self, secret: str) -> bool:
        return any(secret in text for text in self.received)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class GitHttpServer:
    """A smart-HTTP git remote on loopback (``git http-backend``). Mode ``open``: reads are anonymous,
    pushes need HTTP Basic with ``token`` as the password; ``private``: every request needs it;
    ``refuse``: every request gets a 401 that echoes the credentials it carried."""

    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self.bare = root / "gitops.git"
        self.token = token
        self.mode = "refuse"
        self.received: list[str] = []
        self.pushes_authorised = 0
        subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare)], check=True)
        subprocess.run(["git", "--git-dir", str(self.bare), "config", "http.receivepack", "true"], check=True)
        server = self

        class Handler(_QuietHandler):
            def _any(self) -> None:
                body = _read_body(self)
                if server.mode == "refuse":
                    return _echo_401(self, server.received, body)
                push = "git-receive-pack" in self.path
                if push or server.mode == "private":
                    if _credentials_of(self).partition(":")[2] != server.token:
                        return _echo_401(self, server.received, body)
                    server.pushes_authorised += push
                path, _, query = self.path.partition("?")
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                    "REMOTE_USER": "pusher" if push else "",
                    "REMOTE_ADDR": "127.0.0.1",
                }
                output = subprocess.run(
                    ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
                ).stdout
                separator = b"\r\n\r\n" if b"\r\n\r\n" in output else b"\n\n"
                head, _, payload = output.partition(separator)
                status, headers = 200, []
                for line in head.decode("latin-1").splitlines():
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}/gitops.git"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- driving the service ---------------------------------------------------------------------------


class RecordingClient:
    """A TestClient on a fresh app whose every response body is kept for the scan."""

    def __init__(self, settings: Settings, api_key: str, bodies: list[tuple[str, str]]) -> None:
        self.client = TestClient(create_app(settings))
        self.client.__enter__()
        self.client.headers["X-API-Key"] = api_key
        self.app = self.client.app
        self.app.state.orchestrator.retry_base_delay = 0.05

        def keep(response: httpx.Response) -> None:
            response.read()
            bodies.append(
                (f"{response.request.method} {response.request.url.path} -> {response.status_code}", response.text)
            )

        self.client.event_hooks = {"request": [], "response": [keep]}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def wait_final(self, deployment_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            body = self.client.get(f"/mlops/deployments/{deployment_id}").json()
            if body.get("status") in FINAL:
                return body
            time.sleep(0.3)
        raise AssertionError(f"deployment {deployment_id} did not finish: {body}")

    def read_everything(self, deployment_ids: list[str], model_names: list[str], namespace: str) -> None:
        """GET every read route once, so its body is recorded."""
        for deployment_id in deployment_ids:
            self.client.get(f"/mlops/deployments/{deployment_id}")
            self.client.get(f"/mlops/deployments/{deployment_id}/events")
        self.client.get("/mlops/deployments", params={"limit": 100})
        self.client.get("/mlops/status")
        self.client.get("/metrics")
        self.client.get("/ready")
        self.client.get("/mlops/models")
        for name in model_names:
            self.client.get(f"/mlops/models/{name}")
            self.client.get(f"/mlops/models/{name}/history", params={"namespace": namespace})

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def deploy_request(model_name: str, namespace: str, **extra: Any) -> dict:
    return {
        "script_content": b64(TRAIN_PRINTING_ITS_ENVIRONMENT),
        "script_name": "train_printing_env.py",
        "model_name": model_name,
        "namespace": namespace,
        "requirements": ["scikit-learn"],
        "environment_vars": {"GREETING": "hello"},
        "secret_env": {"MODEL_API_TOKEN": {"name": "model-secrets", "key": "api-token"}},
        **extra,
    }


def git_dirs(root: Path) -> list[Path]:
    """Every git directory under ``root``: clones' .git, bare repositories and mirrors."""
    return sorted(
        path
        for path in [root, *root.rglob("*")]
        if path.is_dir() and (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()
    )


def scan_service(scanner: CanaryScanner, data_dir: Path, bodies: list[tuple[str, str]], caplog, capfd) -> None:
    for where, body in bodies:
        scanner.text(f"response body of {where}", body)
    if (data_dir / "journal.db").exists():  # the local-target test never opens the journal
        scanner.sqlite("journal", data_dir / "journal.db")
    scanner.files("data dir", data_dir)
    for git_dir in git_dirs(data_dir):
        scanner.git(f"git repo {git_dir.relative_to(data_dir)}", git_dir)
    scanner.logs(caplog)
    out, err = capfd.readouterr()
    scanner.text("stdout", out)
    scanner.text("stderr", err)


# ---- the scanner can fail --------------------------------------------------------------------------


def test_every_secret_setting_is_enumerated():
    paths = secret_setting_paths()
    for expected in (
        "registry.password",
        "git.token",
        "forge.token",
        "argocd.token",
        "argocd.password",
        "kubernetes.token",
    ):
        assert expected in paths
    # Each gets its own canary, and the overrides really land in SecretStr fields.
    canaries = {path: new_canary(path) for path in paths}
    settings = Settings(**canary_settings(canaries))
    for path, value in canaries.items():
        node = settings
        for part in path.split("."):
            node = getattr(node, part)
        assert node.get_secret_value() == value


def test_the_scanner_finds_planted_canaries(tmp_path, caplog):
    planted = {
        name: new_canary(name)
        for name in (
            "log",
            "body",
            "journal",
            "file",
            "blob",
            "branch",
            "message",
            "loose",
            "config",
            "basic",
            "reflog",
        )
    }
    scanner = CanaryScanner(planted)

    caplog.set_level(logging.DEBUG)
    logging.getLogger("control_api.test").debug("about to leak %s", planted["log"])
    scanner.logs(caplog)
    scanner.text("response body", json.dumps({"error": {"message": f"bad {planted['body']}"}}))
    db = tmp_path / "journal.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE steps (message TEXT)")
        connection.execute("INSERT INTO steps VALUES (?)", (f"failed: {planted['journal']}",))
    scanner.sqlite("journal", db)
    (tmp_path / "data" / "deep").mkdir(parents=True)
    (tmp_path / "data" / "deep" / "train.log").write_text(f"x\n{planted['file']}\n")
    scanner.files("data dir", tmp_path / "data")
    scanner.text(
        "basic header",
        "Authorization: Basic " + base64.b64encode(f"x-access-token:{planted['basic']}".encode()).decode(),
    )

    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(repo)], check=True)
    (repo / "a.yaml").write_text(f"token: {planted['blob']}\n")
    subprocess.run([*git, "add", "a.yaml"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", f"add {planted['message']}"], check=True)
    (repo / "a.yaml").write_text("token: gone\n")  # only the history has it now
    subprocess.run([*git, "commit", "--quiet", "-am", "remove"], check=True)
    subprocess.run([*git, "checkout", "--quiet", "-b", "side"], check=True)
    (repo / "b.yaml").write_text(planted["branch"])
    subprocess.run([*git, "add", "b.yaml"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "side"], check=True)
    subprocess.run([*git, "checkout", "--quiet", "main"], check=True)
    loose = subprocess.run(
        [*git, "hash-object", "-w", "--stdin"], input=planted["loose"].encode(), capture_output=True, check=True
    )
    assert loose.stdout.strip()
    subprocess.run(
        [*git, "config", "remote.origin.url", f"https://u:{planted['config']}@example.invalid/r.git"], check=True
    )
    subprocess.run([*git, "gc", "--quiet", "--prune=never"], check=True)  # packed: objects are compressed
    with (repo / ".git" / "logs" / "HEAD").open("a") as reflog:
        reflog.write(f"{'0' * 40} {'1' * 40} t <t@t> 0 +0000\tcheckout: {planted['reflog']}\n")
    scanner.git("planted repo", repo / ".git")

    found = {leak.canary.split(" ")[0] for leak in scanner.leaks}
    assert found == set(planted), f"missed: {set(planted) - found}"
    with pytest.raises(AssertionError, match="canary leak"):
        scanner.assert_clean()
    assert CanaryScanner({"x": new_canary("x")}, surfaces=["somewhere"]).assert_clean() is None


def test_the_redaction_helper_masks_urls_known_secrets_and_log_records(caplog):
    from control_api import redaction

    token = new_canary("helper")
    assert redaction.redact(f"see https://bob:{token}@git.example/r.git") == "see https://bob:***@git.example/r.git"
    assert redaction.redact(f"clone https://{token}@github.com/o/r") == "clone https://***@github.com/o/r"
    assert redaction.redact("ssh://git@host/r.git") == "ssh://git@host/r.git"
    assert token in redaction.redact(f"bare {token}")  # unknown until registered
    redaction.register_secret(token, users=["bob"])
    basic = base64.b64encode(f"bob:{token}".encode()).decode()
    assert token not in redaction.redact(f"bare {token} and Basic {basic}") and basic not in redaction.redact(basic)
    assert redaction.redact_value({"a": [f"x{token}"], "n": 1}) == {"a": ["x***"], "n": 1}
    assert redaction.url_without_credentials(f"https://bob:{token}@h:1/r.git") == "https://h:1/r.git"

    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("control_api.some.module")
    log.warning("push to %s failed", f"https://u:{token}@h/r")
    try:
        raise RuntimeError(f"boom {token}")
    except RuntimeError:
        log.exception("step raised")
    # uvicorn's access formatter unpacks record.args: a scrubbed record keeps them as a tuple.
    # Logged through a private logger: in a full run a uvicorn server started earlier in the worker may
    # have reconfigured "uvicorn.access" (level, propagation), and the record factory is the same for all.
    logging.getLogger("control_api.test.access_format").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", f"/x?u=https://a:{token}@h", "1.1", 200
    )
    access = caplog.records[-1]
    assert isinstance(access.args, tuple) and len(access.args) == 5 and access.args[2] == "/x?u=https://a:***@h"
    scanner = CanaryScanner({"helper": token})
    scanner.logs(caplog)
    scanner.assert_clean()
    assert "https://u:***@h/r" in caplog.text and "boom ***" in caplog.text


def test_redact_file_streams_and_keeps_everything_else(tmp_path):
    from control_api import redaction

    token = new_canary("file")
    redaction.register_secret(token)
    path = tmp_path / "train.stdout.log"
    lines = [f"line {i} {'x' * (i % 50)}" for i in range(2000)] + [f"env SECRET={token}", "tail é ü"]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff raw byte\n")
    redaction.redact_file(path, chunk_bytes=256)
    data = path.read_bytes()
    assert token.encode() not in data and b"env SECRET=***\n" in data
    assert data.startswith(b"line 0 \nline 1 x\n") and data.endswith("tail é ü\n".encode() + b"\xff raw byte\n")
    assert data.count(b"\n") == len(lines) + 1


# ---- environment_vars: credentials are refused, never echoed, nothing stored --------------------------


def test_credentials_in_environment_vars_are_refused_without_echo(make_client, tmp_path):
    aws_key = "AKIA" + secrets.token_hex(8).upper()
    github = "ghp_" + secrets.token_hex(18)
    random_looking = "Zq" + secrets.token_urlsafe(40) + "9X"
    cases = {
        "SERVICE_TOKEN": new_canary("token"),
        "DB_PASSWORD": new_canary("password"),
        "AWS_SECRET_ACCESS_KEY": new_canary("aws-secret"),
        "PAYMENTS_API_KEY": new_canary("api-key"),
        "CLIENT_SECRET": new_canary("client-secret"),
        "ARTIFACT_URL": f"https://bob:{new_canary('url')}@artifacts.example/x",
        "SOME_ID": aws_key,
        "SOME_VALUE": github,
        "SIGNING_MATERIAL": f"-----BEGIN PRIVATE KEY----- {new_canary('pem')}",
        "MODEL_SEED": random_looking,
        "MULTI_LINE": f"first\n{new_canary('newline')}",
    }
    canaries = {name: value for name, value in cases.items()}
    scanner = CanaryScanner(canaries)
    client = make_client()
    bodies = []
    for name, value in cases.items():
        for extra in ({}, {"secret_env": {"OTHER": {"name": "s", "key": "k"}}}):
            response = client.post(
                "/mlops/deploy",
                json={
                    "script_content": b64("print(1)"),
                    "model_name": "env-canary",
                    "environment_vars": {"GREETING": "hello", name: value},
                    **extra,
                },
            )
            error = assert_error_format(response, 422, "validation_error")
            assert any(d["field"] == "environment_vars" for d in error["details"]), error
            if name != "MULTI_LINE":
                assert "secret_env" in error["message"] and name in error["message"], error
            bodies.append(response.text)
            scanner.text(f"422 body for {name}", response.text)
    assert client.get("/mlops/deployments").json()["total"] == 0
    data_dir = tmp_path / "data"
    scanner.sqlite("journal", data_dir / "journal.db")
    scanner.files("data dir", data_dir)
    scanner.assert_clean()
    # The refusal cannot be dodged by the same name through secret_env's value side: a reference is
    # a name and a key, and anything else is refused.
    response = client.post(
        "/mlops/deploy",
        json={
            "script_content": b64("print(1)"),
            "model_name": "env-canary",
            "secret_env": {"DB_PASSWORD": {"name": "db", "key": "password", "value": cases["DB_PASSWORD"]}},
        },
    )
    assert_error_format(response, 422, "validation_error")
    assert cases["DB_PASSWORD"] not in response.text


# ---- hostile remotes that echo whatever credentials they were sent ------------------------------------


def test_hostile_remotes_echoing_credentials_leak_nothing(
    tmp_path, venv_cache, docker_client, caplog, capfd, monkeypatch
):
    """MLflow, the registry, git, Argo CD, Kubernetes and the forge all answer 401 and repeat the
    credentials they received in their error text. Status checks, a deploy and an undeploy go
    through every one of them; the echoed secrets must be masked everywhere."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    caplog.set_level(logging.DEBUG)
    echo = EchoServer()
    canaries = {path: new_canary(path) for path in secret_setting_paths()}
    canaries["mlflow.tracking_uri"] = new_canary("mlflow-uri")
    canaries["git.remote_url"] = new_canary("git-url")
    canaries["api_key"] = new_canary("api-key")
    scanner = CanaryScanner(canaries)
    bodies: list[tuple[str, str]] = []
    namespace = f"canary-{secrets.token_hex(4)}"
    base = merge(
        canary_settings(canaries),
        {
            "target": {"kind": "argocd", "ready_timeout_seconds": 10},
            "mlflow": {"tracking_uri": f"http://mlflow-user:{canaries['mlflow.tracking_uri']}@{echo.host}"},
            "registry": {"url": echo.host, "username": "canary-registry-user"},
            "git": {"remote_url": f"http://x-access-token:{canaries['git.remote_url']}@{echo.host}/gitops.git"},
            "forge": {"kind": "github", "api_url": echo.url, "repository": "o/r"},
            "argocd": {"server_url": echo.url, "username": "admin"},
            "kubernetes": {"api_url": echo.url},
            "api": {"allowed_namespaces": [namespace], "default_namespace": namespace},
            "auth": {
                "keys": [{"name": "canary-admin", "role": "admin", "key_hash": hash_key(canaries["api_key"])}],
                "rate_limit_per_minute": 6000,
                "rate_limit_burst": 1000,
            },
        },
    )
    try:
        # Two apps on one data dir: Argo CD by static token, then by session login (the password).
        for mode, argocd in (("token", {}), ("session", {"token": None})):
            settings = make_settings(tmp_path / "data", venv_cache, **merge(base, {"argocd": argocd}))
            client = RecordingClient(settings, canaries["api_key"], bodies)
            try:
                status = client.get("/mlops/status").json()
                for component in ("mlflow", "registry", "git", "argocd", "kubernetes"):
                    assert status["components"][component]["status"] == "unhealthy", (mode, component, status)
                assert "***" in json.dumps(status), status  # the echoes came back, masked
                deployed = client.post("/mlops/deploy", json=deploy_request(f"echo-{mode}", namespace))
                assert deployed.json()["status"] == "failed" and deployed.json()["error"]["step"] == "train", (
                    deployed.text
                )
                # An undeploy reads the model's deploy history before it records anything, so the
                # refusing remote answers the request itself.
                undeploy = client.delete(f"/mlops/models/echo-{mode}/deployment", params={"namespace": namespace})
                scanner.text("undeploy answer", undeploy.text)
                assert undeploy.status_code >= 400 and undeploy.json()["error"]["code"] == "git_auth_failed", (
                    undeploy.text
                )
                forge = client.app.state.services.forge
                with pytest.raises(Exception) as refused:
                    forge.get_pull_request(1)
                scanner.text("forge error", str(refused.value))
                # A wrong key is refused without being repeated.
                wrong = client.get("/mlops/deployments", headers={"X-API-Key": canaries["api_key"] + "-wrong"})
                assert_error_format(wrong, 401)
                client.read_everything([deployed.json()["deployment_id"]], [f"echo-{mode}"], namespace)
            finally:
                client.close()
        # The secrets really reached the hostile servers, so they had something to echo.
        for label in (
            "registry.password",
            "git.token",
            "forge.token",
            "argocd.token",
            "argocd.password",
            "kubernetes.token",
            "mlflow.tracking_uri",
        ):
            assert echo.saw(canaries[label]), f"{label} never reached the echo server"
    finally:
        echo.close()
    scan_service(scanner, tmp_path / "data", bodies, caplog, capfd)
    scanner.assert_clean()


# ---- the service as a process: settings from the environment, its own stdout/stderr -------------------


def test_service_process_output_holds_no_canary(tmp_path, venv_cache, docker_client):
    """``python -m control_api serve --log-level debug`` with every secret in its environment
    (``MLOPS_*``, as an operator sets them) and every remote echoing credentials: the process's whole
    output (uvicorn's logs included), its answers and its data dir carry no canary."""
    echo = EchoServer()
    canaries = {path: new_canary(path) for path in secret_setting_paths()}
    canaries["mlflow.tracking_uri"] = new_canary("mlflow-uri")
    canaries["git.remote_url"] = new_canary("git-url")
    canaries["api_key"] = new_canary("api-key")
    scanner = CanaryScanner(canaries)
    namespace = "canary-process"
    data_dir = tmp_path / "data"
    env = {f"MLOPS_{path.replace('.', '__').upper()}": canaries[path] for path in secret_setting_paths()}
    env.update(
        {
            "MLOPS_DATA_DIR": str(data_dir),
            "MLOPS_TARGET__KIND": "argocd",
            "MLOPS_TRAINING__VENV_CACHE_DIR": str(venv_cache),
            "MLOPS_MLFLOW__TRACKING_URI": f"http://mlflow-user:{canaries['mlflow.tracking_uri']}@{echo.host}",
            "MLOPS_REGISTRY__URL": echo.host,
            "MLOPS_REGISTRY__USERNAME": "canary-registry-user",
            "MLOPS_GIT__REMOTE_URL": f"http://x-access-token:{canaries['git.remote_url']}@{echo.host}/gitops.git",
            "MLOPS_FORGE__KIND": "github",
            "MLOPS_FORGE__API_URL": echo.url,
            "MLOPS_FORGE__REPOSITORY": "o/r",
            "MLOPS_ARGOCD__SERVER_URL": echo.url,
            "MLOPS_ARGOCD__USERNAME": "admin",
            "MLOPS_KUBERNETES__API_URL": echo.url,
            "MLOPS_API__ALLOWED_NAMESPACES": json.dumps([namespace]),
            "MLOPS_API__DEFAULT_NAMESPACE": namespace,
            "MLOPS_AUTH__KEYS": json.dumps(
                [{"name": "canary-admin", "role": "admin", "key_hash": hash_key(canaries["api_key"])}]
            ),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
    )
    port = free_port()
    output = tmp_path / "service.log"
    with open(output, "wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "control_api",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "debug",
            ],
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": canaries["api_key"]}
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, output.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.3)
        answers = [
            httpx.get(f"{url}/mlops/status", headers=headers, timeout=60),
            httpx.get(f"{url}/mlops/models", headers=headers, timeout=60),
            httpx.get(f"{url}/mlops/deployments", headers={"X-API-Key": canaries["api_key"] + "-wrong"}, timeout=10),
        ]
        assert answers[0].status_code == 503 and "***" in answers[0].text, answers[0].text
        # A rollback reads the model's deploy history before it records anything: the refusing git
        # remote answers the request itself.
        body = httpx.post(f"{url}/mlops/models/m/rollback", headers=headers, timeout=120)
        assert body.status_code >= 400 and body.json()["error"]["code"] == "git_auth_failed", body.text
        answers += [body]
        # The first status call runs every check in a cold process (MLflow and the Kubernetes client still
        # importing); if one of them gave up before sending, ask again so the canary really goes out.
        # Every answer, the extra ones included, is scanned below.
        wanted = ("argocd.token", "kubernetes.token", "mlflow.tracking_uri", "git.token")
        for _ in range(2):
            if all(echo.saw(canaries[label]) for label in wanted):
                break
            answers.append(httpx.get(f"{url}/mlops/status", headers=headers, timeout=60))
        for answer in answers:
            scanner.text(f"{answer.request.method} {answer.request.url.path} -> {answer.status_code}", answer.text)
        statuses = [a.text for a in answers if a.request.url.path == "/mlops/status"]
        for label in wanted:
            assert echo.saw(canaries[label]), f"{label} never reached the echo server; status said {statuses}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        echo.close()
    log = output.read_text()
    assert "GET /mlops/status" in log and "DEBUG" in log, log[-2000:]  # the access log and debug records are in it
    scanner.text("service stdout/stderr", log)
    scanner.sqlite("journal", data_dir / "journal.db")
    scanner.files("data dir", data_dir)
    for git_dir in git_dirs(data_dir):
        scanner.git(f"git repo {git_dir.relative_to(data_dir)}", git_dir)
    scanner.assert_clean()


# ---- the local target's own fetch of the GitOps repo ----------------------------------------------------


def test_local_target_fetches_a_private_remote_without_keeping_its_credentials(
    tmp_path, venv_cache, kustomize_cmd, caplog, capfd
):
    """The local target renders what the service committed by fetching the remote, like Argo CD's repo
    server. With a private https remote (token in the settings, another secret in the URL) neither
    may end up in its cache's git config nor in the error when the remote refuses."""
    from control_api.adapters.gitops.types import CommitRequest
    from control_api.errors import SyncFailed
    from control_api.pipeline.steps.commit import app_ref
    from control_api.services import Services

    caplog.set_level(logging.DEBUG)
    canaries = {"git.token": new_canary("git.token"), "git.remote_url": new_canary("git-url")}
    scanner = CanaryScanner(canaries)
    git_server = GitHttpServer(tmp_path / "git-server", canaries["git.token"])
    git_server.mode = "private"
    data_dir = tmp_path / "data"
    services = Services(
        make_settings(
            data_dir,
            venv_cache,
            target={"kind": "local"},
            git={
                "remote_url": git_server.url("x-access-token", canaries["git.remote_url"]),
                "token": canaries["git.token"],
            },
        )
    )
    try:
        app = app_ref("canary-ns", "canary-local")
        commit = services.gitops.commit(
            CommitRequest(
                files={f"{app.path}/kustomization.yaml": b"resources: []\n"},
                replace_dirs=(app.path,),
                delete_paths=(),
                subject="deploy canary-local v1",
                trailers={"Model-Name": "canary-local"},
            )
        )
        # Rendered (so fetched through the credential helper) and found to hold no Deployment.
        with pytest.raises(SyncFailed, match="describes no Deployment"):
            services.target.sync(app, commit.sha, lambda line: None)
        git_server.mode = "refuse"
        with pytest.raises(SyncFailed) as refused:
            services.target.sync(app, "main", lambda line: None)
        scanner.text("sync error", refused.value.message)
        assert any(canaries["git.token"] in text for text in git_server.received), "the token never reached the remote"
    finally:
        services.close()
        git_server.close()
    scan_service(scanner, data_dir, [], caplog, capfd)
    scanner.assert_clean()


# ---- real deploys through the failures that tend to leak -----------------------------------------------


@pytest.fixture
def simulated_cluster(tmp_path, contracts_dir, kustomize_cmd, docker_client):
    from tests.simulator import DockerKubelet, Simulator

    made: dict[str, Any] = {}

    def start(*, namespace: str, source_repo: str, secrets_data: dict[str, dict[str, str]], **credentials: str):
        """Argo CD (``token``, ``password``) and a Docker-kubelet cluster (``kubernetes_token``) with the
        namespace and the Secrets an operator would have created there."""
        sim = Simulator(
            DockerKubelet(docker_client),
            work_dir=tmp_path / "simulator",
            kustomize_cmd=kustomize_cmd,
            contracts_dir=contracts_dir,
            namespaces=[namespace],
            source_repos=[source_repo],
            **credentials,
        )
        made["simulator"] = sim
        for name, data in secrets_data.items():
            sim.cluster.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "Opaque",
                    "metadata": {"name": name, "namespace": namespace},
                    "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
                }
            )
        sim.start()
        return sim, sim

    yield start, None
    if made:
        made["simulator"].close()
        assert made["simulator"].checker.violations == []


def test_canaries_stay_secret_through_real_deploys_and_their_failures(
    tmp_path, venv_cache, registry_url, base_image, simulated_cluster, caplog, capfd, monkeypatch
):
    """One model, one training, every failure on its way to being served:

    A. the registry refuses the push and echoes the credentials (registry_auth_failed);
    B. the operator fixes the registry and restarts; the retry pushes, then git refuses the token of a
       remote whose URL carries another secret (git_auth_failed);
    C. git accepts the token; the retry commits, Argo CD (password login) syncs, the model is served;
    D. Argo CD refuses the session while undeploying (argocd_auth_failed);
    E. MLflow (credentials in its URI) goes away: status, models and a new deploy fail.
    """
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    caplog.set_level(logging.DEBUG)
    start_cluster, _ = simulated_cluster
    canaries = {path: new_canary(path) for path in secret_setting_paths()}
    canaries["mlflow.tracking_uri"] = new_canary("mlflow-uri")
    canaries["git.remote_url"] = new_canary("git-url")
    canaries["api_key"] = new_canary("api-key")
    canaries["secret_env value"] = new_canary("secret-env-value")  # lives only in the cluster's Secret
    scanner = CanaryScanner(canaries)
    bodies: list[tuple[str, str]] = []
    namespace = f"canary-{secrets.token_hex(4)}"
    model = "canary-model"
    data_dir = tmp_path / "data"

    echo = EchoServer()
    git_server = GitHttpServer(tmp_path / "git-server", canaries["git.token"])
    mlflow_server = MlflowServer(tmp_path / "mlflow-server").start()
    # Argo CD takes the session route (password); the simulator's Kubernetes API wants the canary token.
    server, simulator = start_cluster(
        namespace=namespace,
        source_repo=f"http://127.0.0.1:{git_server.port}/gitops.git",
        secrets_data={"model-secrets": {"api-token": canaries["secret_env value"]}},
        token=secrets.token_hex(8),
        password=canaries["argocd.password"],
        kubernetes_token=canaries["kubernetes.token"],
    )
    settings_values = merge(
        canary_settings(canaries),
        {
            "target": {"kind": "argocd", "ready_timeout_seconds": 120},
            "mlflow": {"tracking_uri": mlflow_server.uri("mlflow-user", canaries["mlflow.tracking_uri"])},
            "registry": {"url": echo.host, "repository_prefix": "mlops-canary", "username": "canary-registry-user"},
            "build": {"base_image": base_image},
            "git": {"remote_url": git_server.url("x-access-token", canaries["git.remote_url"])},
            "argocd": {"server_url": server.argocd_url, "username": "admin", "token": None},
            "kubernetes": {"api_url": server.kubernetes_url},
            "api": {"allowed_namespaces": [namespace], "default_namespace": namespace},
            "auth": {
                "keys": [{"name": "canary-admin", "role": "admin", "key_hash": hash_key(canaries["api_key"])}],
                "rate_limit_per_minute": 6000,
                "rate_limit_burst": 1000,
            },
        },
    )
    clients: list[RecordingClient] = []

    def app(**overrides: Any) -> RecordingClient:
        for client in clients:
            client.close()
        clients.clear()
        client = RecordingClient(
            make_settings(data_dir, venv_cache, **merge(settings_values, overrides)), canaries["api_key"], bodies
        )
        clients.append(client)
        return client

    ids: list[str] = []
    try:
        # A: the registry refuses and echoes the credentials.
        client = app()
        first = client.post("/mlops/deploy", json=deploy_request(model, namespace)).json()
        ids.append(first["deployment_id"])
        assert first["status"] == "failed" and first["error"]["code"] == "registry_auth_failed", first
        assert echo.saw(canaries["registry.password"]), "the push never offered the registry password"

        # B: the real registry now (same canary credentials; it does not check them); git refuses.
        client = app(registry={"url": registry_url})
        assert client.post(f"/mlops/deployments/{first['deployment_id']}/retry").status_code == 202
        second = client.wait_final(first["deployment_id"])
        assert second["status"] == "failed" and second["error"]["code"] == "git_auth_failed", second
        assert any(canaries["git.token"] in text for text in git_server.received), "git never offered the token"

        # C: git accepts the token; Argo CD syncs; the model is served.
        git_server.mode = "open"
        assert client.post(f"/mlops/deployments/{first['deployment_id']}/retry").status_code == 202
        served = client.wait_final(first["deployment_id"])
        assert served["status"] == "deployed", served
        assert git_server.pushes_authorised >= 1
        assert httpx.get(served["endpoints"]["health"], timeout=10).status_code == 200
        events = client.get(f"/mlops/deployments/{first['deployment_id']}/events").text
        # The script printed its environment: MLflow's URI there is its run's tracking door, which carries no
        # credentials of the tracking server at all (the service talks to the server for it).
        assert re.search(r"env MLFLOW_TRACKING_URI=http://127\.0\.0\.1:\d+\b", events), events[-3000:]
        assert "env MLFLOW_TRACKING_URI=http://mlflow-user" not in events, events[-3000:]
        overlay = subprocess.run(
            ["git", "--git-dir", str(git_server.bare), "show", f"main:apps/{namespace}/{model}/deployment-patch.yaml"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        # secret_env is committed as a reference to the Secret, never as a value.
        env = [
            entry
            for doc in YAML(typ="safe").load_all(overlay)
            if doc
            for container in doc["spec"]["template"]["spec"]["containers"]
            for entry in container.get("env") or []
        ]
        token_env = [entry for entry in env if entry["name"] == "MODEL_API_TOKEN"]
        assert token_env == [
            {"name": "MODEL_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "model-secrets", "key": "api-token"}}}
        ], env
        repo_url = simulator.get_application(f"{namespace}--{model}")["spec"]["source"]["repoURL"]
        assert repo_url == f"http://127.0.0.1:{git_server.port}/gitops.git", repo_url  # no credentials in it

        # D: Argo CD refuses the session while undeploying.
        simulator.set_faults(unauthorized=True)
        undeploy = client.delete(f"/mlops/models/{model}/deployment", params={"namespace": namespace})
        ids.append(undeploy.json()["deployment_id"])
        refused = client.wait_final(undeploy.json()["deployment_id"])
        assert refused["status"] == "failed" and refused["error"]["code"] == "argocd_auth_failed", refused
        simulator.clear_faults()

        # E: MLflow goes away.
        mlflow_server.stop()
        status = client.get("/mlops/status")
        assert status.json()["components"]["mlflow"]["status"] == "unhealthy", status.text
        assert client.get("/mlops/models").status_code >= 500
        failed = client.post("/mlops/deploy", json=deploy_request("canary-second", namespace)).json()
        ids.append(failed["deployment_id"])
        assert failed["status"] == "failed" and failed["error"]["step"] == "train", failed

        client.read_everything(ids, [model, "canary-second"], namespace)
        wrong = client.get("/mlops/status", headers={"X-API-Key": f"{canaries['api_key']}x"})
        assert_error_format(wrong, 401)

        outputs = client.app.state.services.journal.get(served["deployment_id"]).outputs
        for reference in (outputs["local_image"], outputs["image_uri"], outputs["runtime_image"]):
            inspect = subprocess.run(
                ["docker", "image", "inspect", reference], capture_output=True, text=True, check=True
            )
            history = subprocess.run(
                ["docker", "image", "history", "--no-trunc", reference], capture_output=True, text=True, check=True
            )
            scanner.text(f"docker image inspect {reference}", inspect.stdout)
            scanner.text(f"docker image history {reference}", history.stdout)
    finally:
        for client in clients:
            client.close()
        simulator.close()  # containers, proxies and hosts lines go with the simulated cluster
        mlflow_server.stop()
        git_server.close()
        echo.close()

    scan_service(scanner, data_dir, bodies, caplog, capfd)
    scanner.git("GitOps remote", git_server.bare)
    scanner.files("git server", git_server.root)
    scanner.files("simulator", tmp_path / "simulator")
    for git_dir in git_dirs(tmp_path / "simulator"):
        scanner.git(f"simulator mirror {git_dir.name}", git_dir)
    scanner.files("MLflow server artifacts (training logs)", mlflow_server.root / "artifacts")
    scanner.sqlite("MLflow server database", mlflow_server.root / "server.db")
    scanner.assert_clean()
