"""Concurrent writers: rebase on a non-fast-forward push, refuse real content conflicts, serialize threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from control_api.adapters.gitops import CommitRequest, GitConflict, GitOpsRepo, GitUnavailable
from tests.support.git import run_git


def model_request(model: str, content: str = "v1") -> CommitRequest:
    return CommitRequest(
        files={f"apps/{model}/deployment.yaml": f"model: {model}\nimage: {content}\n".encode()},
        replace_dirs=(f"apps/{model}",),
        delete_paths=(),
        subject=f"deploy {model} {content}",
        trailers={"Model-Name": model},
    )


@pytest.fixture
def push_interceptor(monkeypatch):
    """Run ``action`` once, right before GitOpsRepo's first push: the moment a race can happen."""

    def install(action):
        original = GitOpsRepo._push
        calls = {"count": 0}

        def push(self, *args, **kwargs):
            calls["count"] += 1
            if calls["count"] == 1:
                action()
            return original(self, *args, **kwargs)

        monkeypatch.setattr(GitOpsRepo, "_push", push)
        return calls

    return install


def test_push_race_on_other_paths_is_rebased_and_both_commits_land(gitops, other_clone, remote, push_interceptor):
    gitops.commit(model_request("iris"))
    theirs = {}
    calls = push_interceptor(
        lambda: theirs.setdefault(
            "sha", other_clone.write_and_push({"apps/wine/deployment.yaml": "wine\n"}, "deploy wine")
        )
    )

    result = gitops.commit(model_request("iris", "v2"))

    assert calls["count"] == 2  # rejected once, pushed after the rebase
    assert result.changed and result.pushed
    assert remote.git("rev-parse", "main").strip() == result.sha
    assert remote.git("rev-parse", "main~1").strip() == theirs["sha"]
    assert remote.show("main", "apps/wine/deployment.yaml") == b"wine\n"
    assert remote.show("main", "apps/iris/deployment.yaml") == b"model: iris\nimage: v2\n"


def test_content_conflict_raises_git_conflict_and_leaves_a_clean_working_clone(
    gitops, other_clone, remote, push_interceptor, tmp_path
):
    gitops.commit(model_request("iris"))
    push_interceptor(lambda: other_clone.write_and_push({"apps/iris/deployment.yaml": "hand edit\n"}, "hotfix iris"))

    with pytest.raises(GitConflict) as caught:
        gitops.commit(model_request("iris", "v2"))

    assert caught.value.details == {"paths": ["apps/iris/deployment.yaml"]}
    assert remote.message().startswith("hotfix iris")
    workdir = tmp_path / "work-0"
    assert run_git("status", "--porcelain", cwd=workdir) == ""
    assert not (workdir / ".git" / "rebase-merge").exists() and not (workdir / ".git" / "rebase-apply").exists()
    assert run_git("rev-parse", "HEAD", cwd=workdir) == remote.git("rev-parse", "main")
    # The clone is usable right away: the next deploy of another model goes through.
    assert gitops.commit(model_request("wine")).pushed


def test_identical_change_pushed_by_someone_else_first_ends_without_a_commit(
    gitops, other_clone, remote, push_interceptor
):
    same = model_request("iris").files["apps/iris/deployment.yaml"].decode()
    push_interceptor(lambda: other_clone.write_and_push({"apps/iris/deployment.yaml": same}, "same bytes"))

    result = gitops.commit(model_request("iris"))

    assert result.changed is False and result.pushed is False
    assert result.sha == remote.git("rev-parse", "main").strip()
    assert remote.message().startswith("same bytes")


def test_push_retries_are_bounded_by_settings(make_repo, other_clone, remote, git_settings, monkeypatch):
    repo = make_repo(settings=git_settings.model_copy(update={"push_retries": 1}))
    repo.ensure_remote()
    original = GitOpsRepo._push
    counter = iter(range(100))

    def always_raced(self, *args, **kwargs):
        n = next(counter)
        other_clone.write_and_push({f"apps/other{n}/deployment.yaml": f"{n}\n"}, f"other {n}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GitOpsRepo, "_push", always_raced)

    with pytest.raises(GitUnavailable) as caught:
        repo.commit(model_request("iris"))

    assert caught.value.code == "git_push_contended"
    assert next(counter) == 2  # the first push and exactly one retry
    assert "apps/iris/deployment.yaml" not in remote.files()


def test_twenty_concurrent_deploys_of_different_models_all_land(make_repo, remote, git_settings, tmp_path):
    make_repo().ensure_remote()
    before = remote.commit_count()
    # Two replicas (separate clones racing on push), each shared by ten threads (serialized on the lock).
    settings = git_settings.model_copy(update={"push_retries": 25})
    replicas = [make_repo(settings=settings, workdir=tmp_path / f"replica-{n}") for n in range(2)]
    start = threading.Barrier(20)

    def deploy(n: int):
        start.wait()
        return replicas[n % 2].commit(model_request(f"model-{n:02d}"))

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(deploy, range(20)))

    assert all(result.changed and result.pushed for result in results)
    assert remote.commit_count() == before + 20
    assert len({result.sha for result in results}) == 20
    landed = {path.split("/")[1] for path in remote.files() if path.startswith("apps/")}
    assert landed == {f"model-{n:02d}" for n in range(20)}
    subjects = remote.git("log", "--format=%s", f"-{20}", "main").splitlines()
    assert sorted(subjects) == sorted(f"deploy model-{n:02d} v1" for n in range(20))


def test_one_instance_shared_by_threads_keeps_its_clone_consistent(gitops, remote):
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda n: gitops.commit(model_request(f"m{n}")), range(6)))
    assert [r.changed for r in results] == [True] * 6
    assert {f"apps/m{n}/deployment.yaml" for n in range(6)} <= remote.files()
    assert len({r.sha for r in results}) == 6
