"""The commit flow: one deploy = one commit, identical bytes = no commit, stale files removed."""

from __future__ import annotations

import pytest

from control_api.adapters.gitops import CommitRequest
from control_api.errors import InvalidRequestError
from tests.support.git import run_git

TRAILERS = {
    "Model-Name": "iris",
    "Model-Version": "3",
    "Run-Id": "0f2b9c",
    "Image": "127.0.0.1:5000/mlops/iris@sha256:" + "ab" * 32,
    "Deployment-Id": "dep-123",
    "Requested-By": "alice@example.test",
}


def deploy_request(model: str = "iris", version: str = "3", files: dict[str, bytes] | None = None, **overrides):
    files = files or {
        f"apps/{model}/kustomization.yaml": f"resources: [deployment.yaml]\n# {version}\n".encode(),
        f"apps/{model}/deployment.yaml": f"image: {model}:{version}\n".encode(),
    }
    fields = dict(
        files=files,
        replace_dirs=(f"apps/{model}",),
        delete_paths=(),
        subject=f"deploy {model} v{version}",
        body=f"Model {model} version {version}.",
        trailers={**TRAILERS, "Model-Name": model, "Model-Version": version},
    )
    fields.update(overrides)
    return CommitRequest(**fields)


def test_commit_makes_exactly_one_commit_with_subject_body_and_parseable_trailers(gitops, remote):
    before = remote.commit_count()

    result = gitops.commit(deploy_request())

    assert result.changed and result.pushed and result.branch == "main"
    assert remote.commit_count() == before + 1
    assert remote.git("rev-parse", "main").strip() == result.sha
    message = remote.message()
    assert message.splitlines()[0] == "deploy iris v3"
    assert "Model iris version 3." in message
    parsed = run_git("interpret-trailers", "--parse", input_text=message)
    assert dict(line.split(": ", 1) for line in parsed.splitlines()) == TRAILERS
    author = remote.git("log", "-1", "--format=%an <%ae>|%cn <%ce>").strip()
    assert author == "Deploy Bot <deploy-bot@example.test>|Deploy Bot <deploy-bot@example.test>"
    assert remote.show("main", "apps/iris/deployment.yaml") == b"image: iris:3\n"


def test_identical_request_makes_no_commit_and_returns_the_existing_head(gitops, remote):
    first = gitops.commit(deploy_request())
    count = remote.commit_count()

    again = gitops.commit(deploy_request())

    assert again.changed is False and again.pushed is False
    assert again.sha == first.sha
    assert remote.commit_count() == count


def test_rerun_after_a_crash_that_lost_the_working_clone_makes_no_new_commit(gitops, make_repo, remote):
    first = gitops.commit(deploy_request())
    count = remote.commit_count()

    restarted = make_repo()  # a fresh process with an empty workdir
    again = restarted.commit(deploy_request())

    assert (again.changed, again.sha) == (False, first.sha)
    assert remote.commit_count() == count


def test_unpushed_commit_left_in_the_working_clone_is_discarded(gitops, remote, tmp_path):
    gitops.commit(deploy_request(version="1"))
    workdir = tmp_path / "work-0"
    (workdir / "apps/iris/deployment.yaml").write_bytes(b"half-written by a crashed run\n")
    run_git("commit", "--quiet", "-am", "crashed before push", cwd=workdir)
    count = remote.commit_count()

    result = gitops.commit(deploy_request(version="2"))

    assert result.changed
    assert remote.commit_count() == count + 1
    assert "crashed before push" not in remote.git("log", "--format=%s", "main")
    assert remote.show("main", "apps/iris/deployment.yaml") == b"image: iris:2\n"


def test_version_bump_is_a_small_diff_to_the_changed_files_only(gitops, remote):
    gitops.commit(deploy_request(version="1"))
    gitops.commit(deploy_request(version="2"))

    changed = remote.git("diff", "--name-only", "main~1", "main").split()
    assert changed == ["apps/iris/deployment.yaml", "apps/iris/kustomization.yaml"]


def test_replace_dirs_removes_files_of_the_model_that_the_request_no_longer_has(gitops, remote):
    gitops.commit(deploy_request(model="wine"))
    gitops.commit(
        deploy_request(files={"apps/iris/a.yaml": b"a\n", "apps/iris/old/b.yaml": b"b\n", "apps/iris/c.yaml": b"c\n"})
    )

    gitops.commit(deploy_request(version="4", files={"apps/iris/a.yaml": b"a2\n"}))

    files = remote.files()
    assert {path for path in files if path.startswith("apps/iris/")} == {"apps/iris/a.yaml"}
    assert {"apps/wine/deployment.yaml", "apps/wine/kustomization.yaml"} <= files


def test_delete_paths_removes_a_model_and_nothing_else(gitops, remote):
    gitops.commit(deploy_request(model="iris"))
    gitops.commit(deploy_request(model="wine"))

    result = gitops.commit(
        CommitRequest(
            files={},
            replace_dirs=(),
            delete_paths=("apps/iris",),
            subject="undeploy iris",
            trailers={"Model-Name": "iris"},
        )
    )

    assert result.changed
    files = remote.files()
    assert not any(path.startswith("apps/iris") for path in files)
    assert "apps/wine/deployment.yaml" in files
    assert remote.message().startswith("undeploy iris")


def test_deleting_what_is_already_gone_makes_no_commit(gitops, remote):
    count = remote.commit_count()
    result = gitops.commit(
        CommitRequest(files={}, replace_dirs=(), delete_paths=("apps/nothing",), subject="undeploy nothing")
    )
    assert result.changed is False
    assert remote.commit_count() == count


def test_gitignore_in_the_repository_does_not_drop_a_manifest(gitops, remote):
    gitops.commit(deploy_request(files={".gitignore": b"*.yaml\n"}, replace_dirs=()))
    gitops.commit(deploy_request())
    assert "apps/iris/deployment.yaml" in remote.files()


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside", "apps/../../x", ".git/config", "apps/.git/hooks/x", ""])
def test_paths_outside_the_tree_are_refused(gitops, path):
    with pytest.raises(InvalidRequestError):
        gitops.commit(deploy_request(files={path: b"x"}, replace_dirs=()))


def test_an_existing_empty_remote_is_seeded_with_initial_files_on_first_commit(make_repo, remote):
    remote.path.mkdir()
    run_git("init", "--quiet", "--bare", "--initial-branch=main", str(remote.path))
    repo = make_repo(initial_files={"README.md": b"seed\n", "apps/.keep": b""})

    repo.commit(deploy_request())

    subjects = remote.git("log", "--format=%s", "main").splitlines()
    assert subjects == ["deploy iris v3", "Initialise GitOps repository"]
    assert remote.show("main~1", "README.md") == b"seed\n"


def test_ensure_remote_creates_a_missing_file_remote_once(make_repo, remote):
    make_repo().ensure_remote()
    make_repo().ensure_remote()
    assert remote.commit_count() == 1
    assert remote.files() == {"README.md"}
