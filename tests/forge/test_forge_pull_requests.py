"""Each forge adapter against a real HTTP server that speaks that forge's REST API."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from control_api.adapters.forge import (
    ForgeAuthFailed,
    ForgeUnavailable,
    GiteaForge,
    GitHubForge,
    GitLabForge,
    PullRequest,
    make_forge,
)
from control_api.errors import NotFoundError, TerminalError
from control_api.settings import ForgeSettings
from tests.support.forge_emulator import TOKEN, closed_port_url

REPOSITORY = {"github": "acme/gitops", "gitea": "acme/gitops", "gitlab": "platform/ml/gitops"}


def settings_for(server, **overrides) -> ForgeSettings:
    values = dict(kind=server.kind, api_url=server.url, repository=REPOSITORY[server.kind], token=SecretStr(TOKEN))
    values.update(overrides)
    return ForgeSettings(**values)


def forge_for(server, **overrides):
    return make_forge(settings_for(server, **overrides))


EXPECTED_POST = {
    "github": (
        "/repos/acme/gitops/pulls",
        "authorization",
        f"Bearer {TOKEN}",
        {"title": "deploy iris v3", "head": "mlops/iris-v3", "base": "main", "body": "the body"},
    ),
    "gitea": (
        "/api/v1/repos/acme/gitops/pulls",
        "authorization",
        f"token {TOKEN}",
        {"title": "deploy iris v3", "head": "mlops/iris-v3", "base": "main", "body": "the body"},
    ),
    "gitlab": (
        "/api/v4/projects/platform%2Fml%2Fgitops/merge_requests",
        "private-token",
        TOKEN,
        {
            "source_branch": "mlops/iris-v3",
            "target_branch": "main",
            "title": "deploy iris v3",
            "description": "the body",
            "remove_source_branch": True,
        },
    ),
}


def test_open_pull_request_sends_what_the_forge_api_expects(forge_server):
    forge = forge_for(forge_server)

    pull = forge.open_pull_request("mlops/iris-v3", "main", "deploy iris v3", "the body")

    assert pull == PullRequest(number=1, url=pull.url, state="open", merged=False, head_branch="mlops/iris-v3")
    assert pull.url.endswith("/1")
    path, header, value, body = EXPECTED_POST[forge_server.kind]
    [post] = forge_server.sent("POST")
    assert post.raw_path == path
    assert post.headers[header] == value
    assert post.headers["content-type"] == "application/json"
    assert post.json == body
    if forge_server.kind == "github":
        assert post.headers["accept"] == "application/vnd.github+json"
        assert post.headers["x-github-api-version"] == "2022-11-28"


def test_the_existing_open_pull_request_lookup_uses_each_forges_filter(forge_server):
    forge_for(forge_server).open_pull_request("mlops/iris-v3", "main", "t", "b")
    lookup = forge_server.sent("GET")[0]
    if forge_server.kind == "github":
        assert lookup.raw_path == "/repos/acme/gitops/pulls"
        assert lookup.query["head"] == "acme:mlops/iris-v3" and lookup.query["state"] == "open"
    elif forge_server.kind == "gitlab":
        assert lookup.raw_path == "/api/v4/projects/platform%2Fml%2Fgitops/merge_requests"
        assert lookup.query["source_branch"] == "mlops/iris-v3" and lookup.query["state"] == "opened"
    else:
        assert lookup.raw_path == "/api/v1/repos/acme/gitops/pulls"
        assert lookup.query["state"] == "open" and lookup.query["page"] == "1"


def test_opening_again_returns_the_open_pull_request_without_a_second_post(forge_server):
    forge = forge_for(forge_server)
    first = forge.open_pull_request("mlops/iris-v3", "main", "deploy iris v3", "the body")

    again = forge.open_pull_request("mlops/iris-v3", "main", "deploy iris v3", "the body")

    assert again == first
    assert len(forge_server.sent("POST")) == 1


def test_pull_request_opened_by_a_concurrent_attempt_is_returned(forge_server):
    existing = forge_server.add_pull("mlops/iris-v3")
    forge_server.hide_from_next_list = 1  # our lookup misses it; the forge then refuses the duplicate

    pull = forge_for(forge_server).open_pull_request("mlops/iris-v3", "main", "t", "b")

    assert pull.number == existing["number"]
    assert len(forge_server.sent("POST")) == 1
    assert len(forge_server.pulls) == 1


def test_a_merged_pull_request_of_the_same_branch_does_not_block_a_new_one(forge_server):
    forge_server.add_pull("mlops/iris-v3", merged=True)
    pull = forge_for(forge_server).open_pull_request("mlops/iris-v3", "main", "t", "b")
    assert (pull.number, pull.state) == (2, "open")


@pytest.mark.parametrize(
    ("state", "merged", "expected"), [("open", False, "open"), ("closed", True, "merged"), ("closed", False, "closed")]
)
def test_get_pull_request_reports_open_merged_and_closed(forge_server, state, merged, expected):
    pull_record = forge_server.add_pull("mlops/wine-v2", state=state, merged=merged)

    pull = forge_for(forge_server).get_pull_request(pull_record["number"])

    assert (pull.state, pull.merged, pull.head_branch) == (expected, merged, "mlops/wine-v2")
    [get] = forge_server.sent("GET")
    single = {
        "github": "/repos/acme/gitops/pulls/1",
        "gitea": "/api/v1/repos/acme/gitops/pulls/1",
        "gitlab": "/api/v4/projects/platform%2Fml%2Fgitops/merge_requests/1",
    }
    assert get.raw_path == single[forge_server.kind]


def test_unknown_pull_request_is_not_found(forge_server):
    with pytest.raises(NotFoundError):
        forge_for(forge_server).get_pull_request(99)


def test_refused_token_is_terminal_and_never_quoted(forge_server):
    wrong = "wrong-" + TOKEN
    with pytest.raises(ForgeAuthFailed) as caught:
        forge_for(forge_server, token=SecretStr(wrong)).open_pull_request("b", "main", "t", "x")
    assert "HTTP 401" in str(caught.value)
    assert wrong not in str(caught.value) and TOKEN not in str(caught.value)


def test_forbidden_is_terminal(forge_server):
    forge_server.fail_next.append((403, {"message": "Resource not accessible by integration"}, {}))
    with pytest.raises(ForgeAuthFailed, match="not accessible"):
        forge_for(forge_server).get_pull_request(1)


def test_server_errors_are_transient(forge_server):
    forge_server.fail_next.append((502, {"message": "bad gateway"}, {}))
    with pytest.raises(ForgeUnavailable, match="HTTP 502"):
        forge_for(forge_server).open_pull_request("b", "main", "t", "x")


def test_rate_limit_is_transient_not_an_auth_failure(forge_server):
    forge_server.fail_next.append((403, {"message": "API rate limit exceeded"}, {"x-ratelimit-remaining": "0"}))
    with pytest.raises(ForgeUnavailable):
        forge_for(forge_server).get_pull_request(1)


def test_echoed_token_in_an_error_body_is_redacted(forge_server):
    forge_server.fail_next.append((400, {"message": f"bad header {TOKEN}"}, {}))
    with pytest.raises(TerminalError) as caught:
        forge_for(forge_server).get_pull_request(1)
    assert TOKEN not in str(caught.value) and "***" in str(caught.value)


def test_unreachable_forge_is_transient(forge_server):
    forge = forge_for(forge_server, api_url=closed_port_url())
    with pytest.raises(ForgeUnavailable) as caught:
        forge.open_pull_request("b", "main", "t", "x")
    assert TOKEN not in str(caught.value)


def test_make_forge_picks_the_implementation_and_checks_configuration():
    assert make_forge(ForgeSettings()) is None
    token = SecretStr("t")
    assert isinstance(make_forge(ForgeSettings(kind="github", repository="a/b", token=token)), GitHubForge)
    assert isinstance(make_forge(ForgeSettings(kind="gitlab", repository="123", token=token)), GitLabForge)
    assert isinstance(
        make_forge(ForgeSettings(kind="gitea", repository="a/b", token=token, api_url="http://127.0.0.1:1/api/v1")),
        GiteaForge,
    )
    with pytest.raises(TerminalError, match=r"forge\.token"):
        make_forge(ForgeSettings(kind="github", repository="a/b"))
    with pytest.raises(TerminalError, match=r"forge\.api_url"):
        make_forge(ForgeSettings(kind="gitea", repository="a/b", token=token))
    with pytest.raises(TerminalError, match="owner/name"):
        make_forge(ForgeSettings(kind="github", repository="just-a-name", token=token))


def test_close_pull_request_closes_it_through_each_forges_api(forge_server):
    pull_record = forge_server.add_pull("mlops/wine-v3")

    closed = forge_for(forge_server).close_pull_request(pull_record["number"])

    assert (closed.state, closed.merged) == ("closed", False)
    assert forge_server.pulls[pull_record["number"]]["state"] == "closed"
    method, path, body = {
        "github": ("PATCH", "/repos/acme/gitops/pulls/1", {"state": "closed"}),
        "gitea": ("PATCH", "/api/v1/repos/acme/gitops/pulls/1", {"state": "closed"}),
        "gitlab": ("PUT", "/api/v4/projects/platform%2Fml%2Fgitops/merge_requests/1", {"state_event": "close"}),
    }[forge_server.kind]
    [update] = forge_server.sent(method)
    assert (update.raw_path, update.json) == (path, body)


def test_closing_a_merged_pull_request_changes_nothing(forge_server):
    pull_record = forge_server.add_pull("mlops/wine-v4", merged=True)

    pull = forge_for(forge_server).close_pull_request(pull_record["number"])

    assert (pull.state, pull.merged) == ("merged", True)
    assert forge_server.sent("PATCH") == [] and forge_server.sent("PUT") == []
