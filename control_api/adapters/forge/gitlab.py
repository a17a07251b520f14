"""GitLab merge requests through the REST API v4."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from control_api.adapters.forge.errors import ForgeRequestRejected
from control_api.adapters.forge.rest import ForgeRest
from control_api.adapters.forge.types import PullRequest

DEFAULT_API_URL = "https://gitlab.com/api/v4"
STATES = {"opened": "open", "merged": "merged", "closed": "closed", "locked": "closed"}


class GitLabForge:
    def __init__(
        self, api_url: str | None, project: str, token: str, transport: httpx.BaseTransport | None = None
    ) -> None:
        # A project is a numeric id or a "group/subgroup/name" path, which the API wants URL-encoded.
        self._project_path = f"/projects/{quote(project.strip('/'), safe='')}"
        self._rest = ForgeRest(
            "GitLab", api_url or DEFAULT_API_URL, {"PRIVATE-TOKEN": token}, token, transport=transport
        )

    def open_pull_request(self, head: str, base: str, title: str, body: str) -> PullRequest:
        existing = self._find_open(head)
        if existing is not None:
            return existing
        payload = {
            "source_branch": head,
            "target_branch": base,
            "title": title,
            "description": body,
            "remove_source_branch": True,
        }
        response = self._rest.request("POST", f"{self._project_path}/merge_requests", json=payload, accept=(409,))
        if response.status_code == 409:
            # "Another open merge request already exists for this source branch".
            existing = self._find_open(head)
            if existing is None:
                raise ForgeRequestRejected(f"GitLab refused the merge request {head} -> {base}: {response.text[:300]}")
            return existing
        return _merge_request(response.json())

    def get_pull_request(self, number: int) -> PullRequest:
        return _merge_request(self._rest.request("GET", f"{self._project_path}/merge_requests/{int(number)}").json())

    def close(self) -> None:
        self._rest.close()

    def _find_open(self, head: str) -> PullRequest | None:
        params = {"source_branch": head, "state": "opened", "per_page": 10}
        requests = self._rest.request("GET", f"{self._project_path}/merge_requests", params=params).json()
        matching = [mr for mr in requests if mr.get("source_branch") == head]
        return _merge_request(matching[0]) if matching else None


def _merge_request(payload: dict) -> PullRequest:
    state = STATES.get(payload["state"], "closed")
    return PullRequest(
        number=int(payload["iid"]),
        url=payload["web_url"],
        state=state,
        merged=state == "merged",
        head_branch=payload["source_branch"],
    )
