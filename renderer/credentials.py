"""Spot credentials in plain environment variables before they land in a git repository.

Anything committed to the GitOps repo is readable by everyone with access to it and stays in its
history forever, so secrets must travel as Kubernetes Secret references (``secret_env``) instead.
Two signals: the variable's name, and the shape of its value. Messages never repeat the value.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

# Names are split on underscores; a credential word must be a whole segment (or, for the long
# unambiguous words, part of one), so MAX_TOKENS and TOKENIZER_NAME are not flagged.
_SECRET_SUBSTRINGS = ("PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "CREDENTIAL", "PRIVATEKEY", "APIKEY")
_SECRET_SEGMENTS = ("TOKEN", "PWD", "PASS")
_SECRET_SEGMENT_PAIRS = (
    ("API", "KEY"),
    ("ACCESS", "KEY"),
    ("PRIVATE", "KEY"),
    ("SIGNING", "KEY"),
    ("CLIENT", "SECRET"),
)

_VALUE_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_\-]{16,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("an API secret key", re.compile(r"\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_\-]{20,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("a PEM private key or certificate", re.compile(r"-----BEGIN [A-Z ]+-----")),
    ("a JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*")),
    ("a URL with an embedded password", re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@")),
)

# Random-looking runs of base64/base64url characters. Hex strings (run ids, digests) top out at
# 4 bits per character and stay below the threshold.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9+/=_\-]{32,}")
_ENTROPY_BITS_PER_CHAR = 4.3


def _shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(count / len(text) * math.log2(count / len(text)) for count in counts.values())


def _looks_random(run: str) -> bool:
    has_upper = any(char.isupper() for char in run)
    has_lower = any(char.islower() for char in run)
    has_digit = any(char.isdigit() for char in run)
    return has_upper and has_lower and has_digit and _shannon_entropy(run) >= _ENTROPY_BITS_PER_CHAR


def _credential_word_in_name(key: str) -> str | None:
    upper = key.upper()
    segments = [segment for segment in upper.split("_") if segment]
    joined = "".join(segments)
    for word in _SECRET_SUBSTRINGS:
        if word in joined:
            return word
    for word in _SECRET_SEGMENTS:
        if word in segments:
            return word
    for first, second in _SECRET_SEGMENT_PAIRS:
        for left, right in itertools.pairwise(segments):
            if (left, right) == (first, second):
                return f"{first}_{second}"
    return None


def _credential_shape_of_value(value: str) -> str | None:
    for description, pattern in _VALUE_SHAPES:
        if pattern.search(value):
            return description
    for run in _TOKEN_RUN.findall(value):
        if _looks_random(run):
            return "a long random-looking string"
    return None


def check_env_value(key: str, value: str) -> str | None:
    """None when ``key=value`` may be committed in plain text, else why it looks like a credential."""
    reason = None
    word = _credential_word_in_name(key)
    if word and value:
        reason = f"its name contains {word}"
    else:
        shape = _credential_shape_of_value(value)
        if shape:
            reason = f"its value looks like {shape}"
    if reason is None:
        return None
    return (
        f"env {key} looks like a credential ({reason}). Plain env values are committed to the GitOps "
        f"repository in clear text; create a Kubernetes Secret (kubectl create secret generic <name> "
        f"--from-literal=<key>=...) and reference it with secret_env: "
        f'{{"{key}": {{"name": "<name>", "key": "<key>"}}}}'
    )
