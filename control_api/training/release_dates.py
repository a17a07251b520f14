"""When a release was uploaded to the package index: the date its unpinned dependencies are resolved at.

Read from the index's JSON simple API (PEP 691), whose file entries carry ``upload-time`` (PEP 700);
PyPI and the usual mirrors serve it. A release is as old as its last uploaded file: wheels for some
platforms often arrive hours after the first.
"""

from __future__ import annotations

import os
from datetime import datetime

import httpx
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

DEFAULT_INDEX_URL = "https://pypi.org/simple"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def default_index_url() -> str:
    """The index uv installs training environments from (uv's own variables, else PyPI)."""
    return (os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL") or DEFAULT_INDEX_URL).rstrip("/")


def _file_version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


class ReleaseDates:
    def __init__(self, index_url: str | None = None, timeout_seconds: float = 20.0) -> None:
        self.index_url = (index_url or default_index_url()).rstrip("/")
        self.timeout_seconds = timeout_seconds

    def uploaded(self, name: str, version: str) -> datetime | None:
        """Upload time of the last file of ``name==version``; None when the index does not say."""
        url = f"{self.index_url}/{canonicalize_name(name)}/"
        try:
            response = httpx.get(
                url, headers={"Accept": SIMPLE_JSON}, timeout=self.timeout_seconds, follow_redirects=True
            )
            response.raise_for_status()
            files = response.json().get("files", [])
        except (httpx.HTTPError, ValueError):
            return None
        wanted = Version(version)
        times = [
            datetime.fromisoformat(entry["upload-time"].replace("Z", "+00:00"))
            for entry in files
            if isinstance(entry, dict)
            and entry.get("upload-time")
            and _file_version(entry.get("filename", "")) == wanted
        ]
        return max(times) if times else None
