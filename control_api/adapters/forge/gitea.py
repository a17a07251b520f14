"""Gitea and Forgejo pull requests through the REST API v1."""

from __future__ import annotations

from typing import Any

import httpx

from control_api.adapters.forge.flow import PullRequestFlow, owner_and_name
from control_api.adapters.forge.rest import ForgeRest


class GiteaForge(PullRequestFlow):
    forge_name = "Gitea"
    conflict_statuses = (409, 422)  # 409: an open pull request for these branches already exists
    # Older Gitea releases have no head filter on the list endpoint, so the flow pages through open ones;
    # 1,000 open pull requests is far beyond a GitOps repo's review queue.
    page_size = 50
    max_pages = 20

    def __init__(self, api_url: str, repository: str, token: str, transport: httpx.BaseTransport | None = None) -> None:
        owner, name = owner_and_name(self.forge_name, repository)
        rest = ForgeRest(self.forge_name, api_url, {"Authorization": f"token {token}"}, token, transport=transport)
        super().__init__(rest, f"/repos/{owner}/{name}/pulls")

    def _open_query(self, head: str, page: int) -> dict[str, Any]:
        return {"state": "open", "page": page, "limit": self.page_size}
