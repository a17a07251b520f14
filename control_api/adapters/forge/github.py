"""GitHub (and GitHub Enterprise) pull requests through the REST API v3."""

from __future__ import annotations

from typing import Any

import httpx

from control_api.adapters.forge.flow import PullRequestFlow, owner_and_name
from control_api.adapters.forge.rest import ForgeRest

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"


class GitHubForge(PullRequestFlow):
    forge_name = "GitHub"
    conflict_statuses = (422,)  # "A pull request already exists"

    def __init__(
        self, api_url: str | None, repository: str, token: str, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._owner, name = owner_and_name(self.forge_name, repository)
        rest = ForgeRest(
            self.forge_name,
            api_url or DEFAULT_API_URL,
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
            },
            token,
            transport=transport,
        )
        super().__init__(rest, f"/repos/{self._owner}/{name}/pulls")

    def _open_query(self, head: str, page: int) -> dict[str, Any]:
        # GitHub filters by "owner:branch"; a same-repo branch is owned by the repository owner.
        return {"head": f"{self._owner}:{head}", "state": "open", "per_page": self.page_size}

    def _is_merged(self, payload: dict[str, Any]) -> bool:
        # The list endpoint has no "merged" field; merged_at is set on both shapes.
        return bool(payload.get("merged")) or payload.get("merged_at") is not None
