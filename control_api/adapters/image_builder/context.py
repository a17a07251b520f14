"""Build contexts: rendered Dockerfiles (jinja2, StrictUndefined) and the files beside them, packed
as a tar with fixed ownership, mode and mtime so equal inputs give equal contexts."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import IO

import jinja2

from serving_template import MODEL_SERVER_DIR, TEMPLATE_DIR

RUNTIME_TEMPLATE = "runtime.Dockerfile.j2"
MODEL_TEMPLATE = "model.Dockerfile.j2"

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # Dockerfiles, not HTML
)

ContextEntry = bytes | Path


def dockerfile_string(value: object) -> str:
    """A double-quoted Dockerfile word that reads back as exactly ``value``: quotes and backslashes
    escaped, ``$`` escaped so no variable is expanded, line breaks folded (an instruction is one line)."""
    text = " ".join(str(value).splitlines())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


_environment.filters["dockerfile_string"] = dockerfile_string


def render_dockerfile(template: str, **values: object) -> bytes:
    return _environment.get_template(template).render(**values).encode()


def server_files() -> dict[str, Path]:
    """The model server package as it is copied into runtime images (no bytecode caches)."""
    return {
        f"model_server/{path.relative_to(MODEL_SERVER_DIR).as_posix()}": path
        for path in sorted(MODEL_SERVER_DIR.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def server_fingerprint() -> str:
    """Hash of everything of ours that goes into a runtime image: server sources and the runtime template."""
    digest = hashlib.sha256()
    entries = {**server_files(), RUNTIME_TEMPLATE: TEMPLATE_DIR / RUNTIME_TEMPLATE}
    for name in sorted(entries):
        digest.update(name.encode() + b"\0" + entries[name].read_bytes() + b"\0")
    return digest.hexdigest()


def directory_entries(source: Path, prefix: str) -> dict[str, Path]:
    return {
        f"{prefix}/{path.relative_to(source).as_posix()}": path for path in sorted(source.rglob("*")) if path.is_file()
    }


def pack(entries: dict[str, ContextEntry], executables: frozenset[str] = frozenset()) -> IO[bytes]:
    """A tar of ``entries`` (archive name -> bytes or file), spooled to disk when large."""
    # Returned open: the caller streams it to the engine and closes it.
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115
    with tarfile.open(fileobj=spool, mode="w") as archive:
        for name in sorted(entries):
            value = entries[name]
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if name in executables else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            if isinstance(value, Path):
                info.size = value.stat().st_size
                with value.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                info.size = len(value)
                archive.addfile(info, io.BytesIO(value))
    spool.seek(0)
    return spool


def write_directory(entries: dict[str, ContextEntry], target: Path, executables: frozenset[str] = frozenset()) -> None:
    """The same context as ``pack``, as files under ``target`` (for builders that read a directory):
    same modes, mtime 0."""
    for name in sorted(entries):
        value = entries[name]
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value.read_bytes() if isinstance(value, Path) else value)
        path.chmod(0o755 if name in executables else 0o644)
        os.utime(path, (0, 0))
