"""Port: open a pull (merge) request for a review branch and follow it until it is merged or closed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

PullRequestState = Literal["open", "merged", "closed"]


@dataclass(frozen=True)
class PullRequest:
    number: int  # GitHub/Gitea pull number, GitLab merge request iid
    url: str  # the page a reviewer opens
    state: PullRequestState
    merged: bool
    head_branch: str


class Forge(Protocol):
    def open_pull_request(self, head: str, base: str, title: str, body: str) -> PullRequest:
        """Open a pull request from ``head`` into ``base``; an open one for ``head`` is returned as is."""

    def get_pull_request(self, number: int) -> PullRequest:
        """The current state of a pull request; NotFoundError when there is none with that number."""

    def close_pull_request(self, number: int) -> PullRequest:
        """Close a pull request without merging it (a cancelled deploy); one already closed or merged
        is returned as it is."""
