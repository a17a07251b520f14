"""Fetch a git revision and render a Kustomize path to objects: what Argo CD's repo server does.

Used by the local target's sync (and by the Argo CD simulator in tests).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

from ruamel.yaml import YAML

from control_api.adapters.kubectl import kustomize_command
from control_api.redaction import redact


class SourceError(Exception):
    """The repo, revision or path cannot be rendered; the message is shown like Argo CD's ComparisonError."""


class GitSource:
    def __init__(
        self, cache_dir: Path, kustomize_cmd: list[str] | None = None, git_env: dict[str, str] | None = None
    ) -> None:
        """``git_env``: extra environment of the git commands (the service's credential helper), so a
        private remote is fetched with a credential-free URL and no secret lands in the cache's config."""
        self._cache_dir = Path(cache_dir)
        self._kustomize_cmd = kustomize_cmd or kustomize_command()
        self._git_env = {**os.environ, **git_env} if git_env else None
        self._lock = threading.Lock()
        self._rendered: dict[tuple[str, str, str], list[dict]] = {}

    def resolve(self, repo_url: str, revision: str) -> str:
        """Fetch the repo and turn a branch, tag, HEAD or SHA into a commit SHA."""
        with self._lock:
            mirror = self._fetch(repo_url)
            candidates = [revision or "HEAD"]
            if revision and revision != "HEAD":
                candidates.append(f"refs/heads/{revision}")
            for candidate in candidates:
                result = _git(["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], cwd=mirror, check=False)
                if result.returncode == 0:
                    return result.stdout.strip()
            raise SourceError(f"unable to resolve '{revision}' to a commit SHA in {repo_url}")

    def render(self, repo_url: str, sha: str, path: str) -> list[dict]:
        key = (repo_url, sha, path)
        with self._lock:
            if key in self._rendered:
                return self._rendered[key]
            mirror = self._fetch(repo_url)
            archive = _git(["archive", "--format=tar", sha], cwd=mirror, binary=True).stdout
        with tempfile.TemporaryDirectory(prefix="argocd-sim-src-") as workdir:
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(workdir, filter="data")
            source_dir = Path(workdir) / (path or ".")
            if not source_dir.is_dir():
                raise SourceError(f"{path}: app path does not exist at {sha[:12]}")
            result = subprocess.run(
                [*self._kustomize_cmd, str(source_dir)], capture_output=True, text=True, timeout=120
            )
            if result.returncode != 0:
                raise SourceError(f"kustomize build {path} failed: {result.stderr.strip()}")
        objects = [doc for doc in YAML(typ="safe").load_all(result.stdout) if isinstance(doc, dict)]
        with self._lock:
            self._rendered[key] = objects
        return objects

    def _fetch(self, repo_url: str) -> Path:
        mirror = self._cache_dir / hashlib.sha256(repo_url.encode()).hexdigest()[:16]
        try:
            if mirror.exists():
                _git(["fetch", "--prune", "--quiet", "origin", "+refs/*:refs/*"], cwd=mirror, env=self._git_env)
            else:
                self._cache_dir.mkdir(parents=True, exist_ok=True)
                _git(["clone", "--mirror", "--quiet", repo_url, str(mirror)], cwd=self._cache_dir, env=self._git_env)
        except subprocess.CalledProcessError as exc:
            raise SourceError(redact(f"git fetch {repo_url} failed: {exc.stderr.strip()}")) from exc
        return mirror


def _git(
    args: list[str], *, cwd: Path, check: bool = True, binary: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=not binary, check=check, timeout=120, env=env
    )
