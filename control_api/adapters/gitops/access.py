"""How git reaches the remote: a credential-free URL, the environment of every git command, redaction.

A token never goes into the remote URL (it would land in ``.git/config`` and in git's error
messages). It reaches git through a credential helper defined in ``GIT_CONFIG_*`` environment
variables, which git only consults when the server asks for credentials. SSH remotes use whatever
``GIT_SSH_COMMAND`` / ssh-agent the service runs with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from control_api.redaction import redact
from control_api.settings import GitSettings

TOKEN_ENV = "MLOPS_GIT_TOKEN"
# Forges accept a token as the password of any user; GitHub documents this name for app tokens.
DEFAULT_TOKEN_USER = "x-access-token"

# Settings that keep our clone byte-exact and non-interactive whatever the host's git config says.
BASE_CONFIG = (
    ("core.autocrlf", "false"),
    ("core.hooksPath", os.devnull),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("advice.detachedHead", "false"),
    ("gc.auto", "0"),
    # A server that stops sending data fails the command instead of hanging a deploy.
    ("http.lowSpeedLimit", "1000"),
    ("http.lowSpeedTime", "60"),
)


@dataclass(frozen=True)
class RemoteAccess:
    url: str  # never contains a password or token
    token: str | None
    username_in_url: bool

    @classmethod
    def from_settings(cls, remote_url: str, settings: GitSettings) -> RemoteAccess:
        url, url_secret, username_in_url = _split_credentials(remote_url)
        configured = settings.token.get_secret_value() if settings.token else None
        return cls(url=url, token=configured or url_secret, username_in_url=username_in_url)

    @property
    def local_path(self) -> Path | None:
        """The filesystem path of a file:// (or plain path) remote, else None."""
        parts = urlsplit(self.url)
        if parts.scheme == "file":
            return Path(unquote(parts.path))
        if not parts.scheme and ":" not in self.url.split("/", 1)[0]:
            return Path(self.url)  # "/srv/gitops.git"; "host:path" is scp-like ssh
        return None

    def environment(self, author_name: str, author_email: str) -> dict[str, str]:
        config = list(BASE_CONFIG)
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
        }
        if self.token:
            username_line = "" if self.username_in_url else f"echo username={DEFAULT_TOKEN_USER}; "
            helper = f'!f() {{ test "$1" = get || return 0; {username_line}echo "password=${TOKEN_ENV}"; }}; f'
            # The empty value drops helpers from the host config so no other credential is tried.
            config += [("credential.helper", ""), ("credential.helper", helper)]
            env[TOKEN_ENV] = self.token
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def redact(self, text: str) -> str:
        """Remove the token (plain and in a Basic header) and any URL credentials from ``text``."""
        return redact(text, extra=[self.token])


def _split_credentials(remote_url: str) -> tuple[str, str | None, bool]:
    """Return (url without password, the password, whether a user name stays in the url)."""
    parts = urlsplit(remote_url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return remote_url, None, False
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    netloc = f"{user}@{host}" if user else host
    return urlunsplit(parts._replace(netloc=netloc)), unquote(password) or None, bool(user)
