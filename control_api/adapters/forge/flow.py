"""The one pull-request flow every forge follows; each forge supplies only its HTTP shapes.

Opening is find-or-create: an open request for the head branch is returned as is, so a retried
deploy never opens a second one. When the create call loses a race with another attempt of the
same deploy, the forge refuses it with a conflict status and the open request is looked up again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from control_api.adapters.forge.errors import ForgeRequestRejected
from control_api.adapters.forge.rest import ForgeRest
from control_api.adapters.forge.types import PullRequest, PullRequestState
from control_api.errors import TerminalError

MAX_REFUSAL_CHARS = 300


class PullRequestFlow(ABC):
    """Find-or-create, read and close over a forge's REST API.

    A subclass names the forge, the path of its pull-request collection, the statuses its create call
    answers when an open request already exists, and the query that lists open requests. The head
    branch, the create payload and the pull request itself default to GitHub's JSON shapes, which
    Gitea shares; GitLab overrides them.
    """

    forge_name: ClassVar[str]
    request_noun: ClassVar[str] = "pull request"
    conflict_statuses: ClassVar[tuple[int, ...]]
    page_size: ClassVar[int] = 10
    max_pages: ClassVar[int] = 1

    def __init__(self, rest: ForgeRest, collection_path: str) -> None:
        self._rest = rest
        self._collection_path = collection_path

    def open_pull_request(self, head: str, base: str, title: str, body: str) -> PullRequest:
        existing = self._find_open(head)
        if existing is not None:
            return existing
        response = self._rest.request(
            "POST",
            self._collection_path,
            json=self._create_payload(head, base, title, body),
            accept=self.conflict_statuses,
        )
        if response.status_code in self.conflict_statuses:
            existing = self._find_open(head)
            if existing is None:
                raise ForgeRequestRejected(
                    f"{self.forge_name} refused the {self.request_noun} {head} -> {base}: "
                    f"{response.text[:MAX_REFUSAL_CHARS]}"
                )
            return existing
        return self._pull_request(response.json())

    def get_pull_request(self, number: int) -> PullRequest:
        return self._pull_request(self._rest.request("GET", f"{self._collection_path}/{int(number)}").json())

    def close_pull_request(self, number: int) -> PullRequest:
        current = self.get_pull_request(number)
        if current.state != "open":
            return current
        method, payload = self._close_call()
        return self._pull_request(
            self._rest.request(method, f"{self._collection_path}/{int(number)}", json=payload).json()
        )

    def close(self) -> None:
        self._rest.close()

    def _find_open(self, head: str) -> PullRequest | None:
        for page in range(1, self.max_pages + 1):
            pulls = self._rest.request("GET", self._collection_path, params=self._open_query(head, page)).json()
            for pull in pulls:
                if self._head_branch_of(pull) == head:
                    return self._pull_request(pull)
            if len(pulls) < self.page_size:
                return None
        return None

    @abstractmethod
    def _open_query(self, head: str, page: int) -> dict[str, Any]:
        """Query parameters that list open requests, narrowed to ``head`` where the forge can filter."""

    def _head_branch_of(self, payload: dict[str, Any]) -> str | None:
        """The head (source) branch of one listed request, where GitHub and Gitea keep it."""
        ref: str | None = payload.get("head", {}).get("ref")
        return ref

    def _create_payload(self, head: str, base: str, title: str, body: str) -> dict[str, Any]:
        """The JSON body of the create call, as GitHub and Gitea spell it."""
        return {"title": title, "head": head, "base": base, "body": body}

    def _close_call(self) -> tuple[str, dict[str, Any]]:
        """The method and JSON body that close a request, as GitHub and Gitea spell it."""
        return "PATCH", {"state": "closed"}

    def _pull_request(self, payload: dict[str, Any]) -> PullRequest:
        """One request of the forge's JSON as the port's ``PullRequest``, from GitHub's shape."""
        merged = self._is_merged(payload)
        state: PullRequestState = "merged" if merged else ("open" if payload["state"] == "open" else "closed")
        return PullRequest(
            number=int(payload["number"]),
            url=payload["html_url"],
            state=state,
            merged=merged,
            head_branch=payload["head"]["ref"],
        )

    def _is_merged(self, payload: dict[str, Any]) -> bool:
        return bool(payload.get("merged"))


def owner_and_name(forge_name: str, repository: str) -> tuple[str, str]:
    """Split an ``owner/name`` repository, refusing anything else as a configuration error."""
    owner, _, name = repository.strip("/").partition("/")
    if not owner or not name or "/" in name:
        raise TerminalError(
            f"{forge_name} repository must be 'owner/name', got {repository!r}", code="forge_not_configured"
        )
    return owner, name.removesuffix(".git")
