"""Choose the forge implementation from settings."""

from __future__ import annotations

import httpx

from control_api.adapters.forge.gitea import GiteaForge
from control_api.adapters.forge.github import GitHubForge
from control_api.adapters.forge.gitlab import GitLabForge
from control_api.adapters.forge.types import Forge
from control_api.errors import TerminalError
from control_api.settings import ForgeSettings


def make_forge(settings: ForgeSettings, transport: httpx.BaseTransport | None = None) -> Forge | None:
    """The configured forge, or None when pull requests are not used (``kind == "none"``)."""
    if settings.kind == "none":
        return None
    missing = [name for name in ("repository", "token") if not getattr(settings, name)]
    if settings.kind == "gitea" and not settings.api_url:
        missing.append("api_url")  # Gitea is always self-hosted: there is no default address
    if missing:
        fields = ", ".join(f"forge.{name}" for name in missing)
        raise TerminalError(f"forge kind {settings.kind!r} needs {fields}", code="forge_not_configured")
    token = settings.token.get_secret_value()
    if settings.kind == "github":
        return GitHubForge(settings.api_url, settings.repository, token, transport=transport)
    if settings.kind == "gitlab":
        return GitLabForge(settings.api_url, settings.repository, token, transport=transport)
    return GiteaForge(settings.api_url, settings.repository, token, transport=transport)
