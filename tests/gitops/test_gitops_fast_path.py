"""The narrowed commit path (clean stamp, staged paths only, commit-tree) keeps the old results."""

from __future__ import annotations

import pytest

from control_api.adapters.gitops import CommitRequest, GitOpsRepo
from control_api.adapters.gitops.maintenance import LOOSE_OBJECT_LIMIT, estimated_loose_objects, pack_count
from control_api.adapters.gitops.messages import clean_whitespace
from tests.support.git import run_git


def model_request(model: str, version: str, extra: dict[str, bytes] | None = None) -> CommitRequest:
    files = {f"apps/{model}/deployment.yaml": f"model: {model}\nversion: {version}\n".encode(), **(extra or {})}
    return CommitRequest(
        files=files,
        replace_dirs=(f"apps/{model}",),
        delete_paths=(),
        subject=f"deploy {model} v{version}",
        trailers={"Model-Name": model, "Model-Version": version},
    )


@pytest.mark.parametrize(
    "message",
    [
        "deploy iris v3\n\nbody\n\nModel-Name: iris\n",
        "\n\n  \ndeploy iris v3  \t\n\n\n\nbody line   \n\t\n# heading kept\n\n\nKey: value\r\n\n\n",
        "subject without newline",
        "subject\n\n\x0bvertical tab stays\x0c\n",
        "a\n \n b \n\n\n\n c\t\t\n",
    ],
)
def test_message_cleanup_matches_git_stripspace(message):
    assert clean_whitespace(message) == run_git("stripspace", input_text=message)


def test_commit_message_is_what_git_commit_cleanup_whitespace_would_store(gitops, remote):
    body = "Metrics:\n\n\n# accuracy  \n0.97   \n\n"
    gitops.commit(
        CommitRequest(
            files={"apps/iris/a.yaml": b"a\n"},
            replace_dirs=("apps/iris",),
            delete_paths=(),
            subject="deploy iris v1",
            body=body,
            trailers={"Model-Name": "iris"},
        )
    )

    stored = remote.git("cat-file", "commit", "main").split("\n\n", 1)[1]
    assert stored == "deploy iris v1\n\nMetrics:\n\n# accuracy\n0.97\n\nModel-Name: iris\n"


def test_a_deploy_that_died_after_staging_leaves_nothing_in_the_next_commit(gitops, remote, monkeypatch):
    gitops.commit(model_request("iris", "1"))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("process killed between staging and committing")

    with monkeypatch.context() as patch:
        patch.setattr(GitOpsRepo, "_commit_index", crash)
        with pytest.raises(KeyboardInterrupt):
            gitops.commit(model_request("wine", "1", extra={"apps/stray.yaml": b"half a deploy\n"}))

    result = gitops.commit(model_request("iris", "2"))

    assert result.changed
    changed = remote.git("diff", "--name-only", "main~1", "main").split()
    assert changed == ["apps/iris/deployment.yaml"]
    assert not any(path.startswith(("apps/wine", "apps/stray")) for path in remote.files())


def test_an_earlier_change_by_someone_else_to_the_same_file_is_overwritten_not_a_conflict(gitops, other_clone, remote):
    gitops.commit(model_request("iris", "1"))
    other_clone.write_and_push({"apps/iris/deployment.yaml": "hand edit\n", "apps/wine/x.yaml": "wine\n"}, "hotfix")

    result = gitops.commit(model_request("iris", "2"))

    assert result.changed and result.pushed
    assert remote.show("main", "apps/iris/deployment.yaml") == b"model: iris\nversion: 2\n"
    assert remote.show("main", "apps/wine/x.yaml") == b"wine\n"
    assert remote.git("log", "-1", "--format=%s", "main~1").strip() == "hotfix"


def test_glob_characters_in_paths_are_literal(gitops, remote):
    gitops.commit(CommitRequest(files={"apps/m/ab.yaml": b"ab\n"}, replace_dirs=(), delete_paths=(), subject="ab"))
    count = remote.commit_count()

    result = gitops.commit(CommitRequest(files={}, replace_dirs=(), delete_paths=("apps/m/a?.yaml",), subject="rm"))

    assert result.changed is False and remote.commit_count() == count
    assert "apps/m/ab.yaml" in remote.files()


def test_a_branch_deleted_on_the_remote_is_forgotten(gitops, other_clone, remote):
    other_clone.git("fetch", "--quiet", "origin")
    other_clone.git("checkout", "--quiet", "-B", "side", "origin/main")
    other_clone.git("commit", "--quiet", "--allow-empty", "-m", "on a side branch\n\nDeployment-Id: dep-9")
    other_clone.git("push", "--quiet", "origin", "side")
    assert gitops.find_by_trailer("Deployment-Id", "dep-9", branch="side") is not None

    remote.git("branch", "-D", "side")

    assert gitops.find_by_trailer("Deployment-Id", "dep-9", branch="side") is None


def test_many_loose_objects_are_packed_after_a_commit(gitops, tmp_path):
    files = {f"apps/m{n:04d}/deployment.yaml": f"model {n}\n".encode() for n in range(LOOSE_OBJECT_LIMIT + 200)}

    gitops.commit(CommitRequest(files=files, replace_dirs=(), delete_paths=(), subject="many models"))

    objects = tmp_path / "work-0" / ".git" / "objects"
    assert pack_count(objects) >= 1
    assert estimated_loose_objects(objects) < LOOSE_OBJECT_LIMIT
    assert run_git("fsck", "--no-progress", "--connectivity-only", cwd=tmp_path / "work-0") == ""
