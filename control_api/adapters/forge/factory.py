"""Forge kinds: each kind pairs its settings check with its constructor; one line per kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from control_api.adapters.forge import github, gitlab
from control_api.adapters.forge.gitea import GiteaForge
from control_api.adapters.forge.github import GitHubForge
from control_api.adapters.forge.gitlab import GitLabForge
from control_api.adapters.forge.types import Forge
from control_api.errors import TerminalError
from control_api.settings import ForgeSettings

ForgeConstructor = Callable[[str, str, str, httpx.BaseTransport | None], Forge]


@dataclass(frozen=True)
class ForgeKind:
    construct: ForgeConstructor  # (api_url, repository, token, transport)
    default_api_url: str | None  # None: self-hosted only, so forge.api_url is required


FORGE_KINDS: dict[str, ForgeKind] = {
    "github": ForgeKind(GitHubForge, default_api_url=github.DEFAULT_API_URL),
    "gitlab": ForgeKind(GitLabForge, default_api_url=gitlab.DEFAULT_API_URL),
    "gitea": ForgeKind(GiteaForge, default_api_url=None),
}


def missing_forge_settings(settings: ForgeSettings) -> list[str]:
    """The ``forge.*`` settings the configured kind needs and does not have (none for kind "none")."""
    kind = FORGE_KINDS.get(settings.kind)
    if kind is None:
        return []
    missing = [f"forge.{name}" for name in ("repository", "token") if not getattr(settings, name)]
    if kind.default_api_url is None and not settings.api_url:
        missing.append("forge.api_url")
    return missing


def make_forge(settings: ForgeSettings, transport: httpx.BaseTransport | None = None) -> Forge | None:
    """The configured forge, or None when pull requests are not used (``kind == "none"``)."""
    kind = FORGE_KINDS.get(settings.kind)
    if kind is None:
        return None
    missing = missing_forge_settings(settings)
    if missing or settings.repository is None or settings.token is None:
        raise TerminalError(f"forge kind {settings.kind!r} needs {', '.join(missing)}", code="forge_not_configured")
    api_url = settings.api_url or kind.default_api_url or ""
    return kind.construct(api_url, settings.repository, settings.token.get_secret_value(), transport)
