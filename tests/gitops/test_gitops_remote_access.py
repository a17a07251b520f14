"""Reaching the remote: unreachable -> transient, refused credentials -> terminal, the token never leaks."""

from __future__ import annotations

import base64
import threading
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from control_api.adapters.gitops import CommitRequest, GitAuthFailed, GitOpsRepo, GitUnavailable
from control_api.settings import GitSettings
from tests.support.ports import free_port

TOKEN = "ghp_S3cretT0kenValue1234567890"


def a_request() -> CommitRequest:
    return CommitRequest(files={"apps/iris/a.yaml": b"a\n"}, replace_dirs=(), delete_paths=(), subject="deploy iris")


def all_text_under(path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in path.rglob("*") if p.is_file())


class CredentialRecorder(BaseHTTPRequestHandler):
    """A git smart-HTTP endpoint that asks for credentials and refuses whatever it gets."""

    seen_authorization: typing.ClassVar[list[str]] = []

    def do_GET(self):
        header = self.headers.get("Authorization")
        if header:
            self.seen_authorization.append(header)
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="gitops"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def credential_server():
    CredentialRecorder.seen_authorization = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CredentialRecorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/org/gitops.git", CredentialRecorder.seen_authorization
    server.shutdown()
    server.server_close()


def test_unreachable_https_remote_is_transient_and_the_token_is_nowhere(tmp_path):
    settings = GitSettings(token=TOKEN)
    repo = GitOpsRepo(settings, f"https://127.0.0.1:{free_port()}/org/gitops.git", tmp_path / "work")

    with pytest.raises(GitUnavailable) as on_commit:
        repo.commit(a_request())
    with pytest.raises(GitUnavailable) as on_ping:
        repo.ping()

    for error in (on_commit.value, on_ping.value):
        assert "127.0.0.1" in str(error)
        assert TOKEN not in str(error) and TOKEN not in repr(error.details)
    assert TOKEN not in all_text_under(tmp_path)


def test_missing_file_remote_is_unavailable(tmp_path):
    repo = GitOpsRepo(GitSettings(), (tmp_path / "nowhere.git").as_uri(), tmp_path / "work")
    with pytest.raises(GitUnavailable):
        repo.ping()
    with pytest.raises(GitUnavailable):
        repo.head()


def test_token_reaches_the_server_as_basic_auth_and_a_refusal_is_terminal(tmp_path, credential_server):
    url, seen = credential_server
    repo = GitOpsRepo(GitSettings(token=TOKEN), url, tmp_path / "work")

    with pytest.raises(GitAuthFailed) as caught:
        repo.commit(a_request())

    assert seen, "git never sent credentials"
    scheme, encoded = seen[0].split(" ", 1)
    assert (scheme, base64.b64decode(encoded).decode()) == ("Basic", f"x-access-token:{TOKEN}")
    assert TOKEN not in str(caught.value)
    assert TOKEN not in all_text_under(tmp_path)


def test_token_embedded_in_the_url_is_moved_out_of_it(tmp_path, credential_server):
    url, seen = credential_server
    with_secret = url.replace("http://", f"http://deployer:{TOKEN}@")
    repo = GitOpsRepo(GitSettings(), with_secret, tmp_path / "work")

    assert TOKEN not in repo.remote_url and "deployer@" in repo.remote_url
    with pytest.raises(GitAuthFailed) as caught:
        repo.ping()

    # curl first offers the URL's user with no password; the helper answers the 401 that follows.
    offered = [base64.b64decode(header.split(" ", 1)[1]).decode() for header in seen]
    assert offered[-1] == f"deployer:{TOKEN}"
    assert TOKEN not in str(caught.value)
    repo_config = tmp_path / "work" / ".git" / "config"
    assert not repo_config.exists() or TOKEN not in repo_config.read_text()


def test_no_token_means_no_credential_is_offered(tmp_path, credential_server):
    url, seen = credential_server
    repo = GitOpsRepo(GitSettings(), url, tmp_path / "work")
    with pytest.raises(GitAuthFailed):
        repo.ping()  # must fail fast, never wait for a terminal prompt
    assert seen == []
