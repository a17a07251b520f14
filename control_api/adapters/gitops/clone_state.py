"""What the working clone looks like, read without starting git.

A deploy only needs the full reset of the clone (``checkout --force`` + ``clean``, which stat
every file of a 1,000-model tree) when the clone may differ from the commit it starts from. The
clean stamp records the one state we know is exact: written after a flow ends with HEAD, index and
files equal to a commit, deleted before any file is touched. A process killed in between leaves
no stamp, so the next deploy resets the clone as before.

Refs are read the way git stores them (loose files, then ``packed-refs``) by GitPython's
pure-Python reader; starting ``git rev-parse`` for each would cost more than the lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from git import Repo
from git.refs.symbolic import SymbolicReference

CLEAN_STAMP = "mlops-clean"


@dataclass(frozen=True)
class CleanState:
    commit: str
    tree: str


def ref_sha(repo: Repo, ref: str) -> str | None:
    """The object a ref points to (following symbolic refs), or None when it does not exist."""
    try:
        return SymbolicReference.dereference_recursive(repo, ref)
    except (ValueError, OSError):
        return None


def head_branch(repo: Repo) -> str | None:
    """The full ref name HEAD points to, or None when HEAD is detached or unreadable."""
    try:
        return repo.head.reference.path
    except (TypeError, ValueError, OSError):
        return None


def read_clean_state(repo: Repo) -> CleanState | None:
    try:
        fields = (Path(repo.git_dir) / CLEAN_STAMP).read_text().split()
    except OSError:
        return None
    return CleanState(commit=fields[0], tree=fields[1]) if len(fields) == 2 else None


def mark_clean(repo: Repo, commit: str, tree: str) -> None:
    """Record that HEAD, the index and the files are exactly ``commit`` (whose tree is ``tree``)."""
    stamp = Path(repo.git_dir) / CLEAN_STAMP
    partial = stamp.with_name(f"{CLEAN_STAMP}.tmp")
    partial.write_text(f"{commit} {tree}\n")
    partial.replace(stamp)  # a reader sees the old stamp or the new one, never half of one


def mark_dirty(repo: Repo) -> None:
    (Path(repo.git_dir) / CLEAN_STAMP).unlink(missing_ok=True)
