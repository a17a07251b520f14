"""Finding deploys again: trailers after a squash merge, history filters, files at a revision, review branches."""

from __future__ import annotations

import pytest

from control_api.adapters.gitops import CommitRequest
from control_api.errors import InvalidRequestError, NotFoundError


def deploy(model: str, version: str, deployment_id: str, branch: str | None = None) -> CommitRequest:
    return CommitRequest(
        files={f"apps/{model}/deployment.yaml": f"{model}:{version}\n".encode()},
        replace_dirs=(f"apps/{model}",),
        delete_paths=(),
        subject=f"deploy {model} v{version}",
        body="Rendered by the control service.",
        trailers={"Model-Name": model, "Model-Version": version, "Deployment-Id": deployment_id},
        branch=branch,
    )


def test_review_mode_pushes_a_branch_based_on_main_and_leaves_main_alone(gitops, remote):
    main_before = remote.git("rev-parse", "main").strip()

    result = gitops.commit(deploy("iris", "3", "dep-1", branch="mlops/iris-v3"))

    assert (result.changed, result.pushed, result.branch) == (True, True, "mlops/iris-v3")
    assert remote.git("rev-parse", "main").strip() == main_before
    assert remote.git("rev-parse", "mlops/iris-v3").strip() == result.sha
    assert remote.git("rev-parse", "mlops/iris-v3~1").strip() == main_before


def test_review_mode_rerun_makes_no_second_commit(gitops, make_repo, remote):
    first = gitops.commit(deploy("iris", "3", "dep-1", branch="mlops/iris-v3"))

    again = make_repo().commit(deploy("iris", "3", "dep-1", branch="mlops/iris-v3"))

    assert (again.changed, again.sha, again.branch) == (False, first.sha, "mlops/iris-v3")
    assert remote.commit_count("mlops/iris-v3") == remote.commit_count("main") + 1


def test_review_mode_with_nothing_to_change_pushes_no_branch(gitops, remote):
    gitops.commit(deploy("iris", "3", "dep-1"))
    result = gitops.commit(deploy("iris", "3", "dep-2", branch="mlops/iris-v3-again"))
    assert (result.changed, result.pushed, result.branch) == (False, False, "main")
    assert result.sha == remote.git("rev-parse", "main").strip()
    assert "mlops/iris-v3-again" not in remote.git("branch", "--list")


def test_invalid_review_branch_is_refused(gitops):
    with pytest.raises(InvalidRequestError):
        gitops.commit(deploy("iris", "3", "dep-1", branch="bad..name"))


def test_find_by_trailer_finds_a_change_squash_merged_by_a_forge(gitops, other_clone, remote):
    branch_commit = gitops.commit(deploy("iris", "3", "dep-42", branch="mlops/iris-v3"))
    # What a GitLab squash merge writes: the branch's message inside the body, then its own footer.
    other_clone.git("fetch", "--quiet", "origin")
    other_clone.git("checkout", "--quiet", "-B", "main", "origin/main")
    other_clone.git("merge", "--quiet", "--squash", "origin/mlops/iris-v3")
    branch_message = remote.message("mlops/iris-v3")
    squash_message = f"Deploy iris v3 (!12)\n\n{branch_message}\nSee merge request platform/gitops!12\n"
    other_clone.git("commit", "--quiet", "-F", "-", input_text=squash_message)
    other_clone.git("push", "--quiet", "origin", "main")
    squashed_sha = remote.git("rev-parse", "main").strip()

    found = gitops.find_by_trailer("Deployment-Id", "dep-42")

    assert found is not None and found.sha == squashed_sha != branch_commit.sha
    assert found.subject == "Deploy iris v3 (!12)"
    assert found.trailers["Model-Name"] == "iris" and found.trailers["Model-Version"] == "3"
    assert found.author_name == "Other Writer"
    on_branch = gitops.find_by_trailer("Deployment-Id", "dep-42", branch="mlops/iris-v3")
    assert on_branch is not None and on_branch.sha == branch_commit.sha


def test_find_by_trailer_matches_whole_values_only(gitops):
    gitops.commit(deploy("iris", "3", "dep-420"))
    assert gitops.find_by_trailer("Deployment-Id", "dep-42") is None
    found = gitops.find_by_trailer("deployment-id", "dep-420")  # keys are case-insensitive, like git's
    assert found is not None and found.trailers["Deployment-Id"] == "dep-420"


def test_history_filters_by_path_and_trailers_newest_first(gitops):
    gitops.commit(deploy("iris", "1", "dep-1"))
    gitops.commit(deploy("wine", "1", "dep-2"))
    gitops.commit(deploy("iris", "2", "dep-3"))

    iris = gitops.history(path_prefix="apps/iris")
    assert [c.trailers["Deployment-Id"] for c in iris] == ["dep-3", "dep-1"]
    assert all(len(c.parents) == 1 and "T" in c.date for c in iris)

    by_trailer = gitops.history(trailer_filter={"Model-Name": "iris", "Model-Version": "1"})
    assert [c.trailers["Deployment-Id"] for c in by_trailer] == ["dep-1"]

    assert [c.subject for c in gitops.history(limit=2)] == ["deploy iris v2", "deploy wine v1"]
    assert gitops.history(path_prefix="apps/none") == []


def test_read_files_returns_the_bytes_at_an_old_revision(gitops):
    first = gitops.commit(deploy("iris", "1", "dep-1"))
    gitops.commit(deploy("iris", "2", "dep-2"))
    gitops.commit(deploy("wine", "1", "dep-3"))

    assert gitops.read_files(first.sha, "apps/iris") == {"apps/iris/deployment.yaml": b"iris:1\n"}
    assert gitops.read_files("main", "apps") == {
        "apps/iris/deployment.yaml": b"iris:2\n",
        "apps/wine/deployment.yaml": b"wine:1\n",
    }
    assert gitops.read_files("main", "apps/none") == {}
    with pytest.raises(NotFoundError):
        gitops.read_files("0" * 40, "apps")


def test_head_follows_the_remote(gitops, other_clone):
    pushed = other_clone.write_and_push({"notes.txt": "x\n"}, "someone else")
    assert gitops.head() == pushed
    with pytest.raises(NotFoundError):
        gitops.head("no-such-branch")


def _at_endpoint(model: str, endpoint: str, action: str = "deploy") -> CommitRequest:
    folder = f"apps/models/{endpoint}"
    return CommitRequest(
        files={} if action == "undeploy" else {f"{folder}/kustomization.yaml": f"{model}\n".encode()},
        replace_dirs=() if action == "undeploy" else (folder,),
        delete_paths=(folder,) if action == "undeploy" else (),
        subject=f"{action} {model} at {endpoint}",
        body="",
        trailers={"Model-Name": model, "Endpoint": endpoint, "Action": action},
    )


def test_an_endpoints_owner_is_the_model_of_its_newest_commit_until_an_undeploy(gitops):
    from control_api.errors import ConflictError
    from control_api.pipeline.steps.commit import require_endpoint_of

    require_endpoint_of(gitops, "wine", "shared", "models")  # never used: free
    gitops.commit(_at_endpoint("iris", "shared"))
    gitops.commit(_at_endpoint("wine", "shared-staging"))  # a folder whose name starts the same
    require_endpoint_of(gitops, "iris", "shared", "models")
    with pytest.raises(ConflictError) as refused:
        require_endpoint_of(gitops, "wine", "shared", "models")
    assert refused.value.code == "endpoint_in_use" and refused.value.details["model_name"] == "iris"
    require_endpoint_of(gitops, "wine", "shared-staging", "models")

    gitops.commit(_at_endpoint("iris", "shared", action="undeploy"))
    require_endpoint_of(gitops, "wine", "shared", "models")
