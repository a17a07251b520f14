"""What a reviewer does on a forge, done with real git on the GitOps repo's bare remote.

Each function merges (or refuses) a deploy's review branch the way the forge's button would and
returns the commit on the target branch that carries the change, so a test can compare it with the
commit the deployment recorded.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from tests.support.forge_emulator import TOKEN, ForgeEmulator, ServerThread, build_app

REVIEWER = ("-c", "user.name=reviewer", "-c", "user.email=reviewer@localhost")
FINAL = ("deployed", "failed", "timed_out")
API_ROOTS = {"github": "", "gitea": "/api/v1", "gitlab": "/api/v4"}
# Short waits keep the review step's polling quick; the timeout test shortens the timeout itself.
MERGE_POLL_SECONDS = 0.3


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *REVIEWER, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def wait_for_status(
    client: TestClient, deployment_id: str, wanted: Callable[[str], bool], timeout: float = 300
) -> dict:
    """Poll the deployment until ``wanted(status)``; the body as last seen."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/mlops/deployments/{deployment_id}").json()
        if wanted(body["status"]) or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def reviewer_clone(bare: Path, work: Path) -> Path:
    git("clone", "--quiet", bare.as_uri(), str(work))
    return work


def push_unrelated_change(work: Path) -> str:
    """Someone else's change lands on main first, so a rebase or squash must make a new commit."""
    (work / "NOTES.md").write_text(f"edited by a reviewer at {time.time_ns()}\n")
    git("add", "NOTES.md", cwd=work)
    git("commit", "--quiet", "-m", "notes: an unrelated change", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def merge_commit(work: Path, head: str) -> str:
    """ "Create a merge commit": the branch's own commit is what reaches main, under a merge commit."""
    git("fetch", "--quiet", "origin", cwd=work)
    git("merge", "--no-ff", "--quiet", f"origin/{head}", "-m", f"Merge branch '{head}'", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", f"origin/{head}", cwd=work)


def squash_merge(work: Path, head: str) -> str:
    """ "Squash and merge": one new commit whose body lists the squashed commits' messages."""
    git("fetch", "--quiet", "origin", cwd=work)
    git("merge", "--squash", "--quiet", f"origin/{head}", cwd=work)
    squashed = git("log", "--format=* %B", f"HEAD..origin/{head}", cwd=work)
    git("commit", "--quiet", "-m", f"{head} (#1)", "-m", squashed, cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def rebase_merge(work: Path, head: str) -> str:
    """ "Rebase and merge": the branch's commit replayed on top of main, a new SHA, no merge commit."""
    git("fetch", "--quiet", "origin", cwd=work)
    git("checkout", "--quiet", "-b", "rebased", f"origin/{head}", cwd=work)
    git("rebase", "--quiet", "main", cwd=work)
    git("checkout", "--quiet", "main", cwd=work)
    git("merge", "--ff-only", "--quiet", "rebased", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


MERGES: dict[str, Callable[[Path, str], str]] = {
    "merge": merge_commit,
    "squash": squash_merge,
    "rebase": rebase_merge,
}


def mark_merged(emulator: ForgeEmulator, number: int) -> None:
    emulator.pulls[number].update(merged=True, state="closed")


def close_unmerged(emulator: ForgeEmulator, number: int) -> None:
    emulator.pulls[number].update(merged=False, state="closed")


@contextmanager
def review_service(make_e2e_client, kind: str, **forge_settings) -> Iterator[tuple[TestClient, ForgeEmulator]]:
    emulator = ForgeEmulator(kind=kind)
    with ServerThread(build_app(emulator)) as server:
        emulator.url = f"http://127.0.0.1:{server.port}{API_ROOTS[kind]}"
        client = make_e2e_client(
            git={"review_mode": True},
            forge={
                "kind": kind,
                "api_url": emulator.url,
                "repository": "acme/gitops",
                "token": TOKEN,
                "merge_poll_seconds": MERGE_POLL_SECONDS,
                **forge_settings,
            },
        )
        yield client, emulator
