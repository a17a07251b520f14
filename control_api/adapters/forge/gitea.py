"""Gitea and Forgejo pull requests through the REST API v1."""

from __future__ import annotations

import httpx

from control_api.adapters.forge.errors import ForgeRequestRejected
from control_api.adapters.forge.rest import ForgeRest
from control_api.adapters.forge.types import PullRequest
from control_api.errors import TerminalError

PAGE_SIZE = 50
MAX_PAGES = 20  # 1,000 open pull requests is far beyond a GitOps repo's review queue


class GiteaForge:
    def __init__(self, api_url: str, repository: str, token: str, transport: httpx.BaseTransport | None = None) -> None:
        owner, _, name = repository.strip("/").partition("/")
        if not owner or not name or "/" in name:
            raise TerminalError(
                f"Gitea repository must be 'owner/name', got {repository!r}", code="forge_not_configured"
            )
        self._repo_path = f"/repos/{owner}/{name.removesuffix('.git')}"
        self._rest = ForgeRest("Gitea", api_url, {"Authorization": f"token {token}"}, token, transport=transport)

    def open_pull_request(self, head: str, base: str, title: str, body: str) -> PullRequest:
        existing = self._find_open(head)
        if existing is not None:
            return existing
        response = self._rest.request(
            "POST",
            f"{self._repo_path}/pulls",
            json={"title": title, "head": head, "base": base, "body": body},
            accept=(409, 422),
        )
        if response.status_code in (409, 422):
            # Gitea answers 409 when an open pull request for these branches already exists.
            existing = self._find_open(head)
            if existing is None:
                raise ForgeRequestRejected(f"Gitea refused the pull request {head} -> {base}: {response.text[:300]}")
            return existing
        return _pull_request(response.json())

    def get_pull_request(self, number: int) -> PullRequest:
        return _pull_request(self._rest.request("GET", f"{self._repo_path}/pulls/{int(number)}").json())

    def close(self) -> None:
        self._rest.close()

    def _find_open(self, head: str) -> PullRequest | None:
        # Older Gitea releases have no head filter on the list endpoint, so page through open ones.
        for page in range(1, MAX_PAGES + 1):
            params = {"state": "open", "page": page, "limit": PAGE_SIZE}
            pulls = self._rest.request("GET", f"{self._repo_path}/pulls", params=params).json()
            for pull in pulls:
                if pull.get("head", {}).get("ref") == head:
                    return _pull_request(pull)
            if len(pulls) < PAGE_SIZE:
                return None
        return None


def _pull_request(payload: dict) -> PullRequest:
    merged = bool(payload.get("merged"))
    state = "merged" if merged else ("open" if payload["state"] == "open" else "closed")
    return PullRequest(
        number=int(payload["number"]),
        url=payload["html_url"],
        state=state,
        merged=merged,
        head_branch=payload["head"]["ref"],
    )
