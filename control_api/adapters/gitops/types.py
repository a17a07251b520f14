"""Values exchanged with the GitOps repository adapter."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CommitRequest:
    files: dict[str, bytes]  # repo-relative path -> exact bytes to write
    replace_dirs: tuple[str, ...]  # files under these dirs that are NOT in `files` are deleted
    delete_paths: tuple[str, ...]  # files or dirs removed entirely (undeploy)
    subject: str  # e.g. "deploy iris v3"
    body: str = ""
    trailers: dict[str, str] = field(default_factory=dict)  # Model-Name, Model-Version, Run-Id, ...
    branch: str | None = None  # None: the configured branch; else a new review branch


@dataclass(frozen=True)
class CommitResult:
    sha: str  # commit holding the change: the new commit, or the existing head when nothing changed
    changed: bool  # False when the bytes were already there: no commit was made
    branch: str  # the remote branch that holds `sha`
    pushed: bool  # True when this call updated the remote branch


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    subject: str
    author_name: str
    author_email: str
    date: str  # ISO-8601 author date
    trailers: dict[str, str]
    parents: tuple[str, ...]
