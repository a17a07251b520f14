"""Skip locally, fail in CI: what a test does when an external system it needs is missing."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ENABLE_HINT = "run `scripts/services.sh` to install and start it"


def require(available: bool, what: str, hint: str = ENABLE_HINT) -> None:
    """Skip (locally) or fail (in CI) when an external system the test needs is missing."""
    if available:
        return
    message = f"{what} is not available; {hint}"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)
