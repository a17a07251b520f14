"""GitHub (and GitHub Enterprise) pull requests through the REST API v3."""

from __future__ import annotations

import httpx

from control_api.adapters.forge.errors import ForgeRequestRejected
from control_api.adapters.forge.rest import ForgeRest
from control_api.adapters.forge.types import PullRequest
from control_api.errors import TerminalError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"


class GitHubForge:
    def __init__(
        self, api_url: str | None, repository: str, token: str, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._owner, self._name = _owner_and_name(repository)
        self._rest = ForgeRest(
            "GitHub",
            api_url or DEFAULT_API_URL,
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
            },
            token,
            transport=transport,
        )

    def open_pull_request(self, head: str, base: str, title: str, body: str) -> PullRequest:
        existing = self._find_open(head)
        if existing is not None:
            return existing
        response = self._rest.request(
            "POST",
            f"{self._repo_path}/pulls",
            json={"title": title, "head": head, "base": base, "body": body},
            accept=(422,),
        )
        if response.status_code == 422:
            # "A pull request already exists": another attempt of this deploy opened it meanwhile.
            existing = self._find_open(head)
            if existing is None:
                raise ForgeRequestRejected(f"GitHub refused the pull request {head} -> {base}: {response.text[:300]}")
            return existing
        return _pull_request(response.json())

    def get_pull_request(self, number: int) -> PullRequest:
        return _pull_request(self._rest.request("GET", f"{self._repo_path}/pulls/{int(number)}").json())

    def close(self) -> None:
        self._rest.close()

    @property
    def _repo_path(self) -> str:
        return f"/repos/{self._owner}/{self._name}"

    def _find_open(self, head: str) -> PullRequest | None:
        # GitHub filters by "owner:branch"; a same-repo branch is owned by the repository owner.
        params = {"head": f"{self._owner}:{head}", "state": "open", "per_page": 10}
        pulls = self._rest.request("GET", f"{self._repo_path}/pulls", params=params).json()
        matching = [pull for pull in pulls if pull.get("head", {}).get("ref") == head]
        return _pull_request(matching[0]) if matching else None


def _owner_and_name(repository: str) -> tuple[str, str]:
    owner, _, name = repository.strip("/").partition("/")
    if not owner or not name or "/" in name:
        raise TerminalError(f"GitHub repository must be 'owner/name', got {repository!r}", code="forge_not_configured")
    return owner, name.removesuffix(".git")


def _pull_request(payload: dict) -> PullRequest:
    # The list endpoint has no "merged" field; merged_at is set on both shapes.
    merged = bool(payload.get("merged")) or payload.get("merged_at") is not None
    state = "merged" if merged else ("open" if payload["state"] == "open" else "closed")
    return PullRequest(
        number=int(payload["number"]),
        url=payload["html_url"],
        state=state,
        merged=merged,
        head_branch=payload["head"]["ref"],
    )
