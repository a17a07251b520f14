"""Git faults through the control service: the GitOps remote dies at push, and another clone pushes first.

The remote is real every time: ``git daemon`` that kills its own process group from a hook at the
exact moment (tests/faults/servers.py), or the service's bare repo with a ``pre-receive`` hook that
makes another clone's push land while the service's push is in flight.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.faults.consistency import check_consistency
from tests.faults.servers import GitDaemon
from tests.support.availability import require
from tests.support.deploys import deploy, retry, step_attempts, tiny_request, wait_until
from tests.support.git import OTHER_WRITER_ENV, OtherClone


@pytest.fixture
def git_daemon(tmp_path):
    has_daemon = shutil.which("git") is not None and subprocess.run(
        ["git", "daemon", "-h"], capture_output=True
    ).returncode in (0, 129)
    require(has_daemon, "git daemon", "apt-get install git")
    daemon = GitDaemon(tmp_path / "git-server").start()
    yield daemon
    daemon.stop()


@pytest.mark.parametrize("point", ["at-push", "after-update"])
def test_git_remote_dies_at_push_and_a_retry_finishes_without_a_second_commit(
    start_service, git_daemon, cluster, kustomize_cmd, point
):
    """at-push: the server dies when the push connects, nothing reaches it. after-update: it dies
    after writing the pushed commit, before telling the client, so the service thinks it failed."""
    client = start_service(git={"remote_url": git_daemon.url})
    git_daemon.arm(point)

    body = deploy(client, tiny_request("git-down"))

    wait_until(lambda: not git_daemon.running, 10, "the git daemon to be dead")
    assert not git_daemon.armed(point), "the push never reached the hook"
    assert body["status"] == "failed", body
    error = body["error"]
    assert (error["step"], error["code"]) == ("commit", "git_unavailable"), error
    assert f"127.0.0.1:{git_daemon.port}" in error["message"] and "retry the deployment" in error["message"], error
    assert step_attempts(body)["commit"] == 3
    lost_ack = point == "after-update"
    state = check_consistency(
        client,
        git_dir=git_daemon.repo,
        kustomize_cmd=kustomize_cmd,
        simulator=cluster.simulator,
        unacknowledged=(body["deployment_id"],) if lost_ack else (),
    )
    deploy_commits = [c for c in state.commits if c.deployment_id]
    assert [c.deployment_id for c in deploy_commits] == ([body["deployment_id"]] if lost_ack else [])
    assert state.versions == {"git-down": {"1": body["deployment_id"]}}
    assert len(state.tags["git-down"]) == 1

    git_daemon.start()  # the remote is back, same address
    final = retry(client, body["deployment_id"])

    assert final["status"] == "deployed", final
    attempts = step_attempts(final)
    assert attempts["train"] == attempts["register"] == attempts["push"] == 1
    state = check_consistency(client, git_dir=git_daemon.repo, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert [c.deployment_id for c in state.commits if c.deployment_id] == [body["deployment_id"]]
    if lost_ack:  # the retry found its own commit on the remote and added none
        assert final["commit"] == deploy_commits[0].sha
    assert state.versions == {"git-down": {"1": body["deployment_id"]}}


PRE_RECEIVE = """#!/bin/sh
# While the service's push waits here, another clone pushes first (once). The service's ref update
# then finds main moved: git's own "failed to update ref" race, answered by fetch + rebase + push.
cat >/dev/null
if [ -e '{armed}' ]; then
  rm -f '{armed}'
  cd '{other}' && env -i PATH="$PATH" HOME='{other}' {identity} git push -q origin HEAD:main >>'{log}' 2>&1 || exit 1
fi
exit 0
"""


@pytest.mark.parametrize("conflicting", [False, True], ids=["other-paths", "same-overlay"])
def test_push_race_with_another_clone(start_service, cluster, namespace, kustomize_cmd, tmp_path, conflicting):
    client = start_service()
    gitops = client.app.state.services.gitops  # creates and seeds the service's bare remote
    remote = gitops._access.local_path
    model = "git-race"
    other = OtherClone(remote.as_uri(), tmp_path / "other-clone")
    path = f"apps/{namespace}/{model}/kustomization.yaml" if conflicting else "notes/on-call.md"
    content = (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n"
        if conflicting
        else "# on call\n"
    )
    (other.path / path).parent.mkdir(parents=True, exist_ok=True)
    (other.path / path).write_text(content)
    other.git("add", "--all")
    subject = f"hand edit {path}"
    other.git("commit", "--quiet", "-m", subject)
    theirs = other.git("rev-parse", "HEAD").strip()
    armed = tmp_path / "race-armed"
    identity = " ".join(f"{key}='{value}'" for key, value in OTHER_WRITER_ENV.items())
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(PRE_RECEIVE.format(armed=armed, other=other.path, identity=identity, log=tmp_path / "race.log"))
    hook.chmod(0o755)
    armed.touch()

    body = deploy(client, tiny_request(model))

    assert not armed.exists(), "the service never pushed"
    remote_log = subprocess.run(
        ["git", "--git-dir", str(remote), "log", "--format=%H %s", "main"], capture_output=True, text=True
    ).stdout
    assert theirs in remote_log, (remote_log, (tmp_path / "race.log").read_text())
    if not conflicting:
        assert body["status"] == "deployed", body
        assert step_attempts(body)["commit"] == 1  # the race was handled inside the attempt
        state = check_consistency(
            client, kustomize_cmd=kustomize_cmd, foreign_subjects=[subject], simulator=cluster.simulator
        )
        ours = next(c for c in state.commits if c.deployment_id == body["deployment_id"])
        assert [c.sha for c in state.commits[-2:]] == [theirs, ours.sha]  # rebased onto theirs, both kept
        parent = subprocess.run(
            ["git", "--git-dir", str(remote), "rev-parse", f"{ours.sha}^"], capture_output=True, text=True
        ).stdout.strip()
        assert parent == theirs
        assert (
            subprocess.run(
                ["git", "--git-dir", str(remote), "show", f"main:{path}"], capture_output=True, text=True
            ).stdout
            == content
        )
        return

    # The other clone wrote the same file: no silent merge. The deploy fails at commit and says where.
    assert body["status"] == "failed", body
    assert (body["error"]["step"], body["error"]["code"]) == ("commit", "git_conflict"), body["error"]
    assert path in body["error"]["message"]
    overlay = f"apps/{namespace}/{model}"
    state = check_consistency(
        client,
        kustomize_cmd=kustomize_cmd,
        foreign_subjects=[subject],
        foreign_paths=(overlay,),
        simulator=cluster.simulator,
    )
    assert state.commits[-1].sha == theirs  # nothing of ours on main, their change intact
    assert state.versions == {model: {"1": body["deployment_id"]}}

    final = retry(client, body["deployment_id"])  # the retry renders the overlay on top of their commit

    assert final["status"] == "deployed", final
    assert step_attempts(final)["train"] == 1 and step_attempts(final)["commit"] == 2
    state = check_consistency(
        client, kustomize_cmd=kustomize_cmd, foreign_subjects=[subject], simulator=cluster.simulator
    )
    assert [c.sha for c in state.commits[-2:]] == [theirs, final["commit"]]
