"""Fixtures for the GitOps repository tests: a bare file:// remote and plain-git "other writers"."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_api.adapters.gitops import GitOpsRepo
from control_api.settings import GitSettings
from tests.support.git import OtherClone, Remote


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
