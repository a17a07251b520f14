"""Plain-git helpers: the bare remote seen from outside, other writers' clones, and a bare repo's log."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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


def git_log(bare_repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(bare_repo), "log", *args], capture_output=True, text=True, check=True
    ).stdout


def commit_count(bare_repo: Path) -> int:
    return int(
        subprocess.run(
            ["git", "--git-dir", str(bare_repo), "rev-list", "--count", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
