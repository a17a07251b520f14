"""GitLab merge requests through the REST API v4."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from control_api.adapters.forge.flow import PullRequestFlow
from control_api.adapters.forge.rest import ForgeRest
from control_api.adapters.forge.types import PullRequest, PullRequestState

DEFAULT_API_URL = "https://gitlab.com/api/v4"
STATES: dict[str, PullRequestState] = {"opened": "open", "merged": "merged", "closed": "closed", "locked": "closed"}


class GitLabForge(PullRequestFlow):
    forge_name = "GitLab"
    request_noun = "merge request"
    conflict_statuses = (409,)  # "Another open merge request already exists for this source branch"

    def __init__(
        self, api_url: str | None, project: str, token: str, transport: httpx.BaseTransport | None = None
    ) -> None:
        # A project is a numeric id or a "group/subgroup/name" path, which the API wants URL-encoded.
        rest = ForgeRest(
            self.forge_name, api_url or DEFAULT_API_URL, {"PRIVATE-TOKEN": token}, token, transport=transport
        )
        super().__init__(rest, f"/projects/{quote(project.strip('/'), safe='')}/merge_requests")

    def _open_query(self, head: str, page: int) -> dict[str, Any]:
        return {"source_branch": head, "state": "opened", "per_page": self.page_size}

    def _head_branch_of(self, payload: dict[str, Any]) -> str | None:
        branch: str | None = payload.get("source_branch")
        return branch

    def _create_payload(self, head: str, base: str, title: str, body: str) -> dict[str, Any]:
        return {
            "source_branch": head,
            "target_branch": base,
            "title": title,
            "description": body,
            "remove_source_branch": True,
        }

    def _close_call(self) -> tuple[str, dict[str, Any]]:
        return "PUT", {"state_event": "close"}

    def _pull_request(self, payload: dict[str, Any]) -> PullRequest:
        state = STATES.get(payload["state"], "closed")
        return PullRequest(
            number=int(payload["iid"]),
            url=payload["web_url"],
            state=state,
            merged=state == "merged",
            head_branch=payload["source_branch"],
        )
