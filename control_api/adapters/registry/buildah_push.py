"""Push images from buildah's storage with ``buildah push``: credentials in a private auth file (never
on the command line, where every process could read them), the digest from ``--digestfile``."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

from control_api.adapters.image_builder.buildah_cli import Buildah
from control_api.adapters.registry.base import LogSink
from control_api.errors import TerminalError
from control_api.settings import BuildSettings

PUSH_TAIL_LINES = 20


class BuildahPushFailed(Exception):
    """``buildah push`` exited non-zero; the message is its output's last lines."""


class BuildahImagePusher:
    def __init__(self, settings: BuildSettings, buildah: Buildah | None = None) -> None:
        self.buildah = buildah or Buildah(settings)

    def image_id(self, local_reference: str) -> str | None:
        return self.buildah.image_id(local_reference)

    def push(
        self,
        local_reference: str,
        destination: str,
        credentials: tuple[str, str] | None,
        tls_verify: bool,
        on_log: LogSink,
    ) -> str | None:
        if self.image_id(local_reference) is None:
            raise TerminalError(f"local image {local_reference} not found in buildah's storage", code="image_missing")
        with tempfile.TemporaryDirectory(prefix="mlops-buildah-push-") as workdir:
            digest_file = Path(workdir) / "digest"
            args = ["push", f"--tls-verify={'true' if tls_verify else 'false'}", "--digestfile", str(digest_file)]
            if credentials is not None:
                args += ["--authfile", str(_write_auth_file(Path(workdir), destination, credentials))]
            run = self.buildah.stream([*args, local_reference, f"docker://{destination}"], on_log, PUSH_TAIL_LINES)
            digest = digest_file.read_text().strip() if digest_file.exists() else ""
        if run.returncode != 0:
            raise BuildahPushFailed("\n".join(run.tail[-5:]) or f"buildah push exited with status {run.returncode}")
        return digest or None


def _write_auth_file(directory: Path, destination: str, credentials: tuple[str, str]) -> Path:
    """A containers-auth.json holding only the destination registry's credentials, readable by us alone."""
    host = destination.split("/", 1)[0]
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    path = directory / "auth.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"auths": {host: {"auth": token}}}, handle)
    return path
