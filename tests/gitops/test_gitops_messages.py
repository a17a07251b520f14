"""Commit message formatting and trailer parsing, checked against git's own parser."""

from __future__ import annotations

import pytest

from control_api.adapters.gitops.messages import format_commit_message, message_has_trailer, trailer_paragraphs
from control_api.errors import InvalidRequestError
from tests.support.git import run_git


def git_parse(message: str) -> dict[str, str]:
    parsed = run_git("interpret-trailers", "--parse", input_text=message)
    return dict(line.split(": ", 1) for line in parsed.splitlines())


def test_trailers_survive_git_parsing_even_when_values_have_line_breaks():
    message = format_commit_message("deploy  iris\nv3", "", {"Model-Name": "iris", "Requested-By": "a\nb"})
    assert message.splitlines()[0] == "deploy iris v3"
    assert git_parse(message) == {"Model-Name": "iris", "Requested-By": "a b"}


def test_body_with_markdown_and_colons_does_not_disturb_trailers():
    body = "# Why\nMetrics: better\n\n| a | b |"
    message = format_commit_message("deploy iris v3", body, {"Run-Id": "r1"})
    assert git_parse(message) == {"Run-Id": "r1"}
    assert "# Why" in message


@pytest.mark.parametrize("key", ["Model Name", "", "Ünïcode", "-lead"])
def test_invalid_trailer_keys_are_refused(key):
    with pytest.raises(InvalidRequestError):
        format_commit_message("s", "", {key: "v"})


def test_empty_subject_is_refused():
    with pytest.raises(InvalidRequestError):
        format_commit_message("  ", "", {})


def test_trailer_lookup_in_a_squash_body():
    message = "Deploy (#1)\n\n* deploy iris v3\n\nModel-Name: iris\nRun-Id: r9\n\nSee merge request x!1\n"
    assert message_has_trailer(message, "run-id", "r9")
    assert not message_has_trailer(message, "Run-Id", "r")
    assert trailer_paragraphs(message) == {"Model-Name": "iris", "Run-Id": "r9"}
