"""Review mode through the whole pipeline: a branch and a pull request per deploy, against a real
HTTP forge emulator (GitHub, GitLab or Gitea) and real git; the deploy continues once the change is
on the target branch, however the reviewer merged it, and stops when the pull request is refused.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.review_helpers import (
    FINAL,
    MERGES,
    close_unmerged,
    git,
    mark_merged,
    push_unrelated_change,
    review_service,
    reviewer_clone,
    wait_for_status,
)
from tests.support.control import example_request
from tests.support.forge_emulator import TOKEN, ForgeEmulator

PULL_PATHS = {
    "gitlab": "/api/v4/projects/acme%2Fgitops/merge_requests/{number}",
    "gitea": "/api/v1/repos/acme/gitops/pulls/{number}",
}


def only_pull(emulator: ForgeEmulator) -> dict:
    [pull] = emulator.pulls.values()
    return pull


def trailer_commits_on_main(bare: Path, deployment_id: str) -> list[str]:
    found = git("--git-dir", str(bare), "log", "main", "--format=%H", f"--grep=Deployment-Id: {deployment_id}")
    return found.split()


def assert_serves(body: dict) -> None:
    assert body["status"] == "deployed", body
    assert httpx.get(body["endpoints"]["health"], timeout=10).status_code == 200


def test_review_timeout_then_a_retry_after_the_merge_completes_the_deploy(make_e2e_client, tmp_path):
    with review_service(make_e2e_client, "github", review_timeout_seconds=1) as (client, emulator):
        answer = client.post("/mlops/deploy", json=example_request("iris-timeout")).json()
        deployment_id = answer["deployment_id"]
        timed_out = wait_for_status(client, deployment_id, lambda status: status in FINAL)
        assert timed_out["status"] == "timed_out", timed_out
        assert timed_out["error"]["code"] == "review_timed_out"
        assert timed_out["error"]["step"] == "review"
        assert timed_out["commit"] is None

        # A retry before the merge waits a whole timeout again: its deadline is new, not the old one.
        journal = client.app.state.services.journal
        first_deadline = float(journal.get(deployment_id).step("review").outputs["poll_deadline"])
        assert client.post(f"/mlops/deployments/{deployment_id}/retry").status_code == 202
        again = wait_for_status(client, deployment_id, lambda status: status in FINAL)
        assert again["status"] == "timed_out" and again["error"]["code"] == "review_timed_out", again
        second_deadline = float(journal.get(deployment_id).step("review").outputs["poll_deadline"])
        assert second_deadline >= first_deadline + 1  # the retry started after the first deadline passed

        bare = tmp_path / "data" / "gitops.git"
        work = reviewer_clone(bare, tmp_path / "reviewer")
        push_unrelated_change(work)
        head = only_pull(emulator)["head"]
        review_commit = git("--git-dir", str(bare), "rev-parse", head)
        squashed = MERGES["squash"](work, head)
        mark_merged(emulator, only_pull(emulator)["number"])
        assert squashed != review_commit

        retried = client.post(f"/mlops/deployments/{deployment_id}/retry")
        assert retried.status_code == 202, retried.text
        body = wait_for_status(client, deployment_id, lambda status: status in FINAL)
        assert_serves(body)
        assert body["error"] is None
        assert body["commit"] == squashed == git("--git-dir", str(bare), "rev-parse", "main")
        # The retry resumed at the review step: training ran once.
        train = next(step for step in body["steps"] if step["name"] == "train")
        assert train["attempts"] == 1


# Each deploy trains a model (the slow part), so the forges and merge styles are paired up rather
# than crossed: GitHub squash runs in the timeout test above, GitHub's pull request and its refusal in
# the test below.
@pytest.mark.parametrize(("kind", "merge_style"), [("gitlab", "merge"), ("gitea", "rebase")])
def test_each_forge_and_merge_style_completes_the_deploy(make_e2e_client, tmp_path, kind, merge_style):
    with review_service(make_e2e_client, kind) as (client, emulator):
        answer = client.post("/mlops/deploy", json=example_request(f"iris-{kind}")).json()
        assert answer["status"] == "awaiting_review", answer
        pull = only_pull(emulator)
        assert pull["head"].startswith(f"mlops/deploy-iris-{kind}-v1-") and pull["base"] == "main"
        assert answer["pull_request_url"] == (
            f"http://forge.example/{kind}/acme/gitops/-/merge_requests/{pull['number']}"
            if kind == "gitlab"
            else f"http://forge.example/{kind}/acme/gitops/pull/{pull['number']}"
        )

        # While it waits, the review step asks this forge's own API about the pull request.
        pull_path = PULL_PATHS[kind].format(number=pull["number"])
        deadline = time.monotonic() + 60
        while pull_path not in {r.raw_path for r in emulator.sent("GET")} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pull_path in {r.raw_path for r in emulator.sent("GET")}

        bare = tmp_path / "data" / "gitops.git"
        assert trailer_commits_on_main(bare, answer["deployment_id"]) == []
        work = reviewer_clone(bare, tmp_path / "reviewer")
        push_unrelated_change(work)
        review_commit = git("--git-dir", str(bare), "rev-parse", pull["head"])
        merged = MERGES[merge_style](work, pull["head"])
        mark_merged(emulator, pull["number"])

        body = wait_for_status(client, answer["deployment_id"], lambda status: status in FINAL)
        assert_serves(body)
        assert trailer_commits_on_main(bare, answer["deployment_id"]) == [merged]
        assert body["commit"] == merged
        if merge_style == "merge":
            # A merge commit keeps the branch's own commit, the second parent of main's head; the
            # merge commit itself carries no trailer.
            assert merged == review_commit == git("rev-parse", "HEAD^2", cwd=work)
        else:
            # Rebase and squash make a new commit, main's head.
            assert merged != review_commit
            assert merged == git("--git-dir", str(bare), "rev-parse", "main")


def test_a_pull_request_closed_without_merging_fails_the_deploy(make_e2e_client, tmp_path, e2e_namespace):
    with review_service(make_e2e_client, "github") as (client, emulator):
        answer = client.post("/mlops/deploy", json=example_request("iris-refused")).json()
        assert answer["status"] == "awaiting_review", answer
        created = [r for r in emulator.sent("POST") if r.raw_path == "/repos/acme/gitops/pulls"]
        assert len(created) == 1
        pr = created[0].json
        assert pr["base"] == "main" and pr["head"].startswith("mlops/deploy-iris-refused-v1-")
        assert pr["title"] == "deploy iris-refused v1"
        assert "iris-refused" in pr["body"] and "First deployment" in pr["body"]
        assert created[0].headers["authorization"] == f"Bearer {TOKEN}"

        close_unmerged(emulator, only_pull(emulator)["number"])
        body = wait_for_status(client, answer["deployment_id"], lambda status: status in FINAL)
        assert body["status"] == "failed", body
        assert body["error"]["code"] == "review_rejected"
        assert body["error"]["step"] == "review"
        assert answer["pull_request_url"] in body["error"]["message"]
        assert body["commit"] is None
        # Nothing reached the target branch, and nothing runs.
        bare = tmp_path / "data" / "gitops.git"
        assert trailer_commits_on_main(bare, answer["deployment_id"]) == []
        runtime = client.app.state.services.local_runtime
        assert [w for w in runtime.list() if w.namespace == e2e_namespace] == []
