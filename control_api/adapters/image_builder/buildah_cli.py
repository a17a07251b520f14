"""The ``buildah`` command line, with the storage the settings name.

buildah keeps images in a containers/storage directory (no daemon): every command is one process
that locks that storage, works and exits. The same root and driver must be passed to every command,
or a build's images are invisible to the push that follows.
"""

from __future__ import annotations

import collections
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from control_api.adapters.image_builder.base import LogSink
from control_api.errors import ServiceUnavailable
from control_api.settings import BuildSettings

# What buildah says when a name or ID matches no local image.
_NOT_FOUND_MARKERS = ("image not known", "no such image", "not found in local storage")
COMMAND_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class StreamedRun:
    returncode: int
    tail: list[str]  # the last lines of the merged output


class Buildah:
    def __init__(self, settings: BuildSettings) -> None:
        self.settings = settings

    def command(self, *args: str) -> list[str]:
        """``buildah`` with the global storage options, then ``args``."""
        options = [self.settings.buildah_executable]
        if self.settings.buildah_storage_root is not None:
            options += ["--root", str(self.settings.buildah_storage_root)]
        if self.settings.buildah_run_root is not None:
            options += ["--runroot", str(self.settings.buildah_run_root)]
        if self.settings.buildah_storage_driver:
            options += ["--storage-driver", self.settings.buildah_storage_driver]
        return [*options, *args]

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
        """Run one command to its end; raise ServiceUnavailable when buildah itself cannot start."""
        try:
            return subprocess.run(
                self.command(*args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError as exc:
            raise ServiceUnavailable(
                f"buildah is not installed ({self.settings.buildah_executable} not found); install the buildah "
                "package or set MLOPS_BUILD__BACKEND=docker",
                code="buildah_unavailable",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise ServiceUnavailable(
                f"buildah {args[0]} did not finish within {timeout:.0f}s (storage locked by another process?)",
                code="buildah_unavailable",
            ) from exc

    def stream(self, args: Sequence[str], emit: LogSink, tail_lines: int) -> StreamedRun:
        """Run a long command (build, push), handing each output line to ``emit`` as it comes."""
        tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        try:
            process = subprocess.Popen(
                self.command(*args),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
            )
        except FileNotFoundError as exc:
            raise ServiceUnavailable(
                f"buildah is not installed ({self.settings.buildah_executable} not found)", code="buildah_unavailable"
            ) from exc
        assert process.stdout is not None  # stdout=PIPE
        with process:
            try:
                for raw in process.stdout:
                    line = raw.rstrip()
                    if line.strip():
                        tail.append(line)
                        emit(line)
            except BaseException:
                # ``emit`` refused to go on (the deploy was cancelled): stop the build itself, not only
                # our reading of it, before the block waits for the process.
                process.terminate()
                raise
        return StreamedRun(process.returncode, list(tail))

    def image_id(self, reference: str) -> str | None:
        """``sha256:...`` of the local image ``reference`` (the digest of its config, as Docker's IDs)."""
        found = self.run("inspect", "--type", "image", "--format", "{{.FromImageID}}", reference)
        if found.returncode == 0 and found.stdout.strip():
            return "sha256:" + found.stdout.strip().removeprefix("sha256:")
        if any(marker in found.stderr.lower() for marker in _NOT_FOUND_MARKERS):
            return None
        raise ServiceUnavailable(
            f"buildah could not read its image storage: {found.stderr.strip()[-500:]}", code="buildah_unavailable"
        )
