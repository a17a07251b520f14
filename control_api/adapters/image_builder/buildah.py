"""``ImageBuilder`` with buildah: the same two layers as the Docker backend (``layers``), built without
a daemon, in buildah's own image storage.

The base image comes from a registry (pulled once into the storage, then reused like the Docker
Engine's local image); RUN steps are isolated with ``buildah_isolation`` (chroot by default, which
needs no user namespace or nested runtime). Images are written in Docker's v2s2 format, as the
Docker Engine writes them, so both backends push the same kind of manifest.
"""

from __future__ import annotations

import re
import tempfile
import threading
import uuid
from pathlib import Path
from typing import ClassVar

from control_api.adapters.image_builder import context, layers
from control_api.adapters.image_builder.base import BuiltImage, LogSink, ModelBundle
from control_api.adapters.image_builder.buildah_cli import Buildah
from control_api.errors import ImageBuildFailed, ServiceUnavailable
from control_api.settings import BuildSettings

PULL_TIMEOUT_SECONDS = 900
# Errors of a pull that a later attempt may not see (the registry was down, not the name wrong).
_TRANSIENT_PULL = re.compile(
    r"connection refused|i/o timeout|timeout|no such host|temporary failure|too many requests|\b50[234]\b",
    re.IGNORECASE,
)
_ERROR_LINE = re.compile(r"^(error|Error:)", re.IGNORECASE)


class BuildahImageBuilder:
    _python_versions: ClassVar[dict[str, str]] = {}
    _pull_lock = threading.Lock()

    def __init__(self, settings: BuildSettings, buildah: Buildah | None = None) -> None:
        self.settings = settings
        self.buildah = buildah or Buildah(settings)

    # ---- port -------------------------------------------------------------------------------

    def ping(self) -> None:
        """buildah runs and can open its storage."""
        answer = self.buildah.run("info", "--format", "{{.store.GraphDriverName}}")
        if answer.returncode != 0:
            raise ServiceUnavailable(
                f"buildah cannot open its image storage: {answer.stderr.strip()[-500:]}", code="buildah_unavailable"
            )

    def build(self, bundle: ModelBundle, on_log: LogSink) -> BuiltImage:
        self._ensure_base_image(on_log)
        return layers.build_two_layers(self, self.settings.base_image, self.settings.pip_index_url, bundle, on_log)

    # ---- layers.LayerEngine -------------------------------------------------------------------

    def image_id(self, reference: str) -> str | None:
        return self.buildah.image_id(reference)

    def python_version(self, base_id: str) -> str:
        """Python of the base image (keys the runtime; pickles are only safe within one minor version)."""
        if base_id not in self._python_versions:
            container = f"mlops-python-probe-{uuid.uuid4().hex[:12]}"
            created = self.buildah.run("from", "--pull=never", "--name", container, base_id.removeprefix("sha256:"))
            if created.returncode != 0:
                reason = created.stderr.strip()[-300:]
                raise ImageBuildFailed(
                    f"cannot start a container of base image {self.settings.base_image}: {reason}",
                    code="base_image_unusable",
                )
            try:
                probe = self.buildah.run(
                    "run",
                    "--isolation",
                    self.settings.buildah_isolation,
                    container,
                    "--",
                    "python3",
                    "-c",
                    "import sys; print('%d.%d.%d' % sys.version_info[:3])",
                )
            finally:
                self.buildah.run("rm", container)
            if probe.returncode != 0 or not probe.stdout.strip():
                raise ImageBuildFailed(
                    f"base image {self.settings.base_image} has no working python3: "
                    f"{(probe.stderr or probe.stdout).strip()[-300:]}",
                    code="base_image_unusable",
                )
            self._python_versions[base_id] = probe.stdout.strip().splitlines()[-1]
        return self._python_versions[base_id]

    def uv_binary(self) -> Path | None:
        """The control service's own uv: buildah runs RUN steps on this machine, so its binary fits."""
        return layers.host_uv_binary()

    def build_context(
        self, entries: dict[str, context.ContextEntry], executables: frozenset[str], tag: str, emit: LogSink
    ) -> str:
        with tempfile.TemporaryDirectory(prefix="mlops-buildah-") as workdir:
            context_dir = Path(workdir) / "context"
            context.write_directory(entries, context_dir, executables)
            iidfile = Path(workdir) / "image-id"
            args = [
                "build",
                "--isolation",
                self.settings.buildah_isolation,
                "--pull=never",  # the base is pulled beforehand; the runtime layer is local
                "--format",
                "docker",
                "--iidfile",
                str(iidfile),
                "--tag",
                tag,
                "--file",
                str(context_dir / "Dockerfile"),
            ]
            if self.settings.network_mode:
                args += ["--network", self.settings.network_mode]
            run = self.buildah.stream([*args, str(context_dir)], emit, layers.LOG_TAIL_LINES)
            image_id = iidfile.read_text().strip() if iidfile.exists() else ""
        if run.returncode != 0:
            error = next((line for line in reversed(run.tail) if _ERROR_LINE.match(line)), None)
            error = error or (run.tail[-1] if run.tail else f"buildah exited with status {run.returncode}")
            raise ImageBuildFailed(
                f"image build of {tag} failed: {error}\n" + "\n".join(run.tail),
                details={"image": tag, "error": error, "log_tail": run.tail},
            )
        if not image_id:
            raise ImageBuildFailed(
                f"image build of {tag} ended without an image\n" + "\n".join(run.tail),
                details={"image": tag, "log_tail": run.tail},
            )
        return "sha256:" + image_id.removeprefix("sha256:")

    # ---- base image -------------------------------------------------------------------------

    def _ensure_base_image(self, emit: LogSink) -> None:
        """Pull the base image into buildah's storage once; later builds use the stored copy."""
        base = self.settings.base_image
        with self._pull_lock:
            if self.buildah.image_id(base) is not None:
                return
            emit(f"pulling base image {base}")
            pulled = self.buildah.run(
                "pull",
                "--policy",
                "missing",
                f"--tls-verify={'true' if self.settings.base_image_tls_verify else 'false'}",
                base,
                timeout=PULL_TIMEOUT_SECONDS,
            )
        if pulled.returncode == 0:
            return
        message = pulled.stderr.strip()[-500:]
        if _TRANSIENT_PULL.search(message):
            raise ServiceUnavailable(f"cannot pull base image {base}: {message}", code="registry_unavailable")
        raise ImageBuildFailed(
            f"base image {base} cannot be pulled: {message}; push it to a registry buildah can reach, or set "
            "MLOPS_BUILD__BASE_IMAGE (and MLOPS_BUILD__BASE_IMAGE_TLS_VERIFY=false for a plain-HTTP registry)",
            code="base_image_missing",
        )
