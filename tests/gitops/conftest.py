"""Fixtures for the GitOps repository tests: a bare file:// remote and plain-git "other writers"."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from control_api.adapters.gitops import GitOpsRepo
from control_api.settings import GitSettings

OTHER_WRITER_ENV = {
    "GIT_AUTHOR_NAME": "Other Writer",
    "GIT_AUTHOR_EMAIL": "other@example.test",
    "GIT_COMMITTER_NAME": "Other Writer",
    "GIT_COMMITTER_EMAIL": "other@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def run_git(*args: str, cwd: Path | None = None, input_text: str | None = None) -> str:
    completed = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        env={**os.environ, **OTHER_WRITER_ENV},
        check=True,
    )
    return completed.stdout


class OtherClone:
    """Someone else's clone of the remote (a person, another replica, a forge's merge button)."""

    def __init__(self, remote: str, path: Path) -> None:
        run_git("clone", "--quiet", remote, str(path))
        self.path = path

    def git(self, *args: str, input_text: str | None = None) -> str:
        return run_git(*args, cwd=self.path, input_text=input_text)

    def write_and_push(self, files: dict[str, str], message: str, branch: str = "main") -> str:
        self.git("fetch", "--quiet", "origin")
        self.git("checkout", "--quiet", "-B", branch, f"origin/{branch}")
        for path, text in files.items():
            target = self.path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        self.git("push", "--quiet", "origin", f"{branch}:{branch}")
        return self.git("rev-parse", "HEAD").strip()


class Remote:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = path.as_uri()

    def git(self, *args: str) -> str:
        return run_git("--git-dir", str(self.path), *args)

    def commit_count(self, ref: str = "main") -> int:
        return int(self.git("rev-list", "--count", ref).strip())

    def show(self, ref: str, path: str) -> bytes:
        return subprocess.run(
            ["git", "--git-dir", str(self.path), "show", f"{ref}:{path}"], capture_output=True, check=True
        ).stdout

    def files(self, ref: str = "main") -> set[str]:
        return set(self.git("ls-tree", "-r", "--name-only", ref).split())

    def message(self, ref: str = "main") -> str:
        return self.git("log", "-1", "--format=%B", ref)


@pytest.fixture
def git_settings() -> GitSettings:
    return GitSettings(author_name="Deploy Bot", author_email="deploy-bot@example.test", push_retries=3)


@pytest.fixture
def remote(tmp_path) -> Remote:
    return Remote(tmp_path / "gitops.git")


@pytest.fixture
def make_repo(tmp_path, remote, git_settings):
    """Build GitOpsRepo instances on the shared remote, each with its own working clone by default."""
    counter = iter(range(1000))

    def factory(settings: GitSettings | None = None, workdir: Path | None = None, **kwargs) -> GitOpsRepo:
        repo = GitOpsRepo(
            settings or git_settings,
            kwargs.pop("remote_url", remote.url),
            workdir or tmp_path / f"work-{next(counter)}",
            initial_files=kwargs.pop("initial_files", {"README.md": b"GitOps repository\n"}),
        )
        return repo

    return factory


@pytest.fixture
def gitops(make_repo):
    repo = make_repo()
    repo.ensure_remote()
    return repo


@pytest.fixture
def other_clone(tmp_path, remote, gitops):
    return OtherClone(remote.url, tmp_path / "other-clone")
