"""Apply a commit request's writes and deletions to a checked-out tree (pure filesystem work)."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from control_api.adapters.gitops.types import CommitRequest
from control_api.errors import InvalidRequestError


def checked_path(path: str) -> str:
    """A normalised repo-relative POSIX path, or InvalidRequestError for anything that escapes the tree."""
    pure = PurePosixPath(path)
    if path.startswith("/") or not path.strip() or any(part in ("..", ".git") for part in pure.parts):
        raise InvalidRequestError(f"invalid repository path {path!r}")
    normalised = str(pure)
    if normalised == ".":
        raise InvalidRequestError(f"invalid repository path {path!r}: the repository root")
    return normalised


def apply_request(root: Path, request: CommitRequest) -> None:
    files = {checked_path(path): content for path, content in request.files.items()}
    for path in request.delete_paths:
        _remove(root, root / checked_path(path))
    for directory in request.replace_dirs:
        _remove_stale(root, checked_path(directory), keep=set(files))
    write_files(root, files)


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for path, content in sorted(files.items()):
        _write(root, checked_path(path), content)


def _remove(root: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    _prune_empty_parents(root, target.parent)


def _remove_stale(root: Path, directory: str, keep: set[str]) -> None:
    base = root / directory
    if not base.is_dir():
        return
    for candidate in sorted(base.rglob("*"), reverse=True):  # children before their directories
        relative = candidate.relative_to(root).as_posix()
        if candidate.is_dir() and not candidate.is_symlink():
            if not any(candidate.iterdir()):
                candidate.rmdir()
        elif relative not in keep:
            candidate.unlink()


def _write(root: Path, path: str, content: bytes) -> None:
    target = root / path
    for parent in reversed(target.relative_to(root).parents[:-1]):
        # A path that used to be a file may now have to be a directory (and the other way round).
        existing = root / parent
        if existing.is_file() or existing.is_symlink():
            existing.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    target.write_bytes(content)


def _prune_empty_parents(root: Path, directory: Path) -> None:
    # git does not track directories; removing empty ones keeps the working clone tidy.
    while directory != root and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def touched_paths(root: Path, request: CommitRequest) -> tuple[list[str], list[str]]:
    """The paths a request may change, split into (still in the tree, gone from the tree).

    Staging only these keeps ``git add`` from scanning a 1,000-model tree, and keeps anything
    outside them out of the commit. git refuses to add a path that matches no file, so paths
    that no longer hold any file are staged as removals instead.
    """
    covered = tuple(checked_path(directory) for directory in request.replace_dirs)
    paths = {checked_path(path) for path in request.delete_paths} | set(covered)
    paths |= {path for path in map(checked_path, request.files) if not _is_under(path, covered)}
    present: list[str] = []
    gone: list[str] = []
    for path in sorted(paths):
        (present if _holds_a_file(root / path) else gone).append(path)
    return present, gone


def _is_under(path: str, directories: tuple[str, ...]) -> bool:
    return any(path == directory or path.startswith(f"{directory}/") for directory in directories)


def _holds_a_file(target: Path) -> bool:
    if target.is_symlink() or target.is_file():
        return True
    if target.is_dir():
        return any(not child.is_dir() or child.is_symlink() for child in target.rglob("*"))
    return False
