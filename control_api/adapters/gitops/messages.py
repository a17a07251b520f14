"""Commit messages: subject, body and ``Key: value`` trailers that ``git interpret-trailers`` parses.

Trailers are how a deploy is found again in history, including after a forge squash-merged or
rebased it, so matching looks at every ``Key: value`` line of the message, not only the final
trailer block a squash may have buried under a "See merge request" line.
"""

from __future__ import annotations

import re

from control_api.errors import InvalidRequestError

TRAILER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
TRAILER_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):[ \t]*(.*?)\s*$")


def format_commit_message(subject: str, body: str, trailers: dict[str, str]) -> str:
    subject_line = " ".join(subject.split())
    if not subject_line:
        raise InvalidRequestError("a commit needs a subject")
    paragraphs = [subject_line]
    if body.strip():
        paragraphs.append(body.strip("\n"))
    if trailers:
        paragraphs.append("\n".join(_trailer_line(key, value) for key, value in trailers.items()))
    return "\n\n".join(paragraphs) + "\n"


def _trailer_line(key: str, value: str) -> str:
    if not TRAILER_KEY.match(key):
        raise InvalidRequestError(f"invalid trailer key {key!r}: use letters, digits and '-'")
    # A line break in a value would end the trailer and turn the rest into prose.
    single_line = " ".join(str(value).split())
    if not single_line:
        raise InvalidRequestError(f"trailer {key!r} has an empty value")
    return f"{key}: {single_line}"


def parse_trailer_block(text: str) -> dict[str, str]:
    """Parse git's ``%(trailers:only,unfold)`` output; the last value wins for a repeated key."""
    parsed: dict[str, str] = {}
    for line in text.splitlines():
        match = TRAILER_LINE.match(line)
        if match:
            parsed[match.group(1)] = match.group(2)
    return parsed


def trailer_paragraphs(message: str) -> dict[str, str]:
    """``Key: value`` lines from every paragraph made only of such lines (squash-merge bodies)."""
    found: dict[str, str] = {}
    paragraphs = message.split("\n\n")[1:]  # the subject is never a trailer
    for paragraph in paragraphs:
        lines = [line for line in paragraph.splitlines() if line.strip()]
        matches = [match for match in map(TRAILER_LINE.match, lines) if match]
        if lines and len(matches) == len(lines):
            for match in matches:
                found.setdefault(match.group(1), match.group(2))
    return found


def message_has_trailer(message: str, key: str, value: str) -> bool:
    wanted_key = key.lower()
    for line in message.splitlines():
        match = TRAILER_LINE.match(line.strip())
        if match and match.group(1).lower() == wanted_key and match.group(2) == value:
            return True
    return False


# git's isspace(): space, tab, newline and carriage return, not vertical tab or form feed.
GIT_WHITESPACE = " \t\n\r"


def clean_whitespace(message: str) -> str:
    """The message as ``git commit --cleanup=whitespace`` stores it (git's ``stripspace``).

    Trailing whitespace goes from every line, runs of empty lines become one, and empty lines
    at the start and the end go; commits made with ``git commit-tree`` get the same bytes.
    """
    lines: list[str] = []
    pending_empty = False
    for line in message.split("\n"):
        stripped = line.rstrip(GIT_WHITESPACE)
        if not stripped:
            pending_empty = True
            continue
        if pending_empty and lines:
            lines.append("")
        pending_empty = False
        lines.append(stripped)
    return "".join(f"{line}\n" for line in lines)
