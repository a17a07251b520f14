"""Where the CLI finds the service: flags, then MLOPS_SERVER / MLOPS_API_KEY, then ~/.config/mlops/config.toml."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SERVER = "http://127.0.0.1:8000"


class ConfigError(Exception):
    """The config file exists but cannot be used; a usage error for the CLI."""


@dataclass(frozen=True)
class Connection:
    server: str
    api_key: str | None


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "mlops" / "config.toml"


def read_config_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    values = {}
    for key in ("server", "api_key"):
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a string")
        values[key] = value
    return values


def normalise_server(server: str) -> str:
    server = server.strip().rstrip("/")
    if "://" not in server:
        server = f"http://{server}"
    return server


def resolve_connection(server: str | None, api_key: str | None, env: Mapping[str, str] = os.environ) -> Connection:
    file_values: dict[str, str] | None = None

    def from_file(key: str) -> str | None:
        nonlocal file_values
        if file_values is None:
            file_values = read_config_file(config_path(env))
        return file_values.get(key)

    chosen_server = server or env.get("MLOPS_SERVER") or from_file("server") or DEFAULT_SERVER
    chosen_key = api_key or env.get("MLOPS_API_KEY") or from_file("api_key")
    return Connection(server=normalise_server(chosen_server), api_key=chosen_key or None)
