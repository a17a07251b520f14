"""The repo server: git refs resolved through a cache, manifests rendered with real ``kubectl kustomize``.

Refs: the controller resolves a branch through a cache (``git ls-remote`` once, then reused) that is
dropped on a refresh (``?refresh=normal|hard`` or a periodic reconcile); a user-triggered sync
resolves without the cache (application.go resolveRevision: NoRevisionCache). A commit SHA needs no
resolution and is fetched by the render (a sync by SHA sees a commit at once).
Manifests: a Kustomize path (kustomization.yaml present) is rendered with kustomize, any other path
as a directory of YAML files (Argo CD's "Directory" source type).
"""

from __future__ import annotations

import copy
import hashlib
import re
import subprocess
import tempfile
import threading
from pathlib import Path

from ruamel.yaml import YAML

SHA_PATTERN = re.compile(r"^[0-9a-f]{40}$")
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class RepoError(Exception):
    pass


def is_commit_sha(revision: str) -> bool:
    """git.IsCommitSHA."""
    return bool(SHA_PATTERN.match(revision or ""))


class RepoServer:
    def __init__(self, work_dir: Path, kustomize_cmd: list[str]) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.kustomize_cmd = list(kustomize_cmd)
        self._refs: dict[str, dict[str, str]] = {}
        self._manifests: dict[tuple[str, str, str], list[dict]] = {}
        self._source_types: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        self._repo_locks: dict[str, threading.Lock] = {}

    # ---- refs ----------------------------------------------------------------------------------

    def _ls_remote(self, repo_url: str) -> dict[str, str]:
        result = subprocess.run(["git", "ls-remote", repo_url], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RepoError(f"failed to list refs: {result.stderr.strip()}")
        refs = {}
        for line in result.stdout.splitlines():
            sha, ref = line.split("\t", 1)
            refs[ref] = sha
        return refs

    def test_repository(self, repo_url: str) -> None:
        """The repo server's TestRepository: the remote answers ls-remote."""
        self._ls_remote(repo_url)

    def resolve(self, repo_url: str, revision: str, *, use_cache: bool = True) -> str:
        revision = revision or "HEAD"
        if is_commit_sha(revision):
            return revision
        with self._lock:
            refs = self._refs.get(repo_url) if use_cache else None
        if refs is None:
            refs = self._ls_remote(repo_url)
            if use_cache:
                with self._lock:
                    self._refs[repo_url] = refs
        for ref in (revision, f"refs/heads/{revision}", f"refs/tags/{revision}"):
            if ref in refs:
                return refs[ref]
        raise RepoError(f"Unable to resolve '{revision}' to a commit SHA")

    def refresh(self, repo_url: str) -> None:
        with self._lock:
            self._refs.pop(repo_url, None)

    # ---- manifests -----------------------------------------------------------------------------

    def _mirror(self, repo_url: str, sha: str) -> Path:
        key = hashlib.sha256(repo_url.encode()).hexdigest()[:16]
        mirror = self.work_dir / "repos" / key
        with self._lock:
            lock = self._repo_locks.setdefault(key, threading.Lock())
        with lock:
            if not mirror.exists():
                mirror.parent.mkdir(parents=True, exist_ok=True)
                self._git("init", "--bare", "--quiet", str(mirror))
            if not self._has_commit(mirror, sha):
                fetch = subprocess.run(
                    ["git", "--git-dir", str(mirror), "fetch", "--quiet", "--force", repo_url, "+refs/*:refs/*"],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                if fetch.returncode != 0:
                    raise RepoError(f"failed to fetch {repo_url}: {fetch.stderr.strip()}")
            if not self._has_commit(mirror, sha):
                raise RepoError(f"unable to checkout git repo {repo_url} with revision {sha}: reference not found")
        return mirror

    def source_type(self, repo_url: str, sha: str, path: str) -> str:
        """status.sourceType of a path rendered before."""
        with self._lock:
            return self._source_types.get((repo_url, sha, path), "Directory")

    @staticmethod
    def _has_commit(mirror: Path, sha: str) -> bool:
        return (
            subprocess.run(
                ["git", "--git-dir", str(mirror), "cat-file", "-e", f"{sha}^{{commit}}"], capture_output=True
            ).returncode
            == 0
        )

    @staticmethod
    def _git(*args: str) -> None:
        subprocess.run(["git", *args], check=True, capture_output=True, timeout=60)

    def manifests(self, repo_url: str, sha: str, path: str) -> list[dict]:
        key = (repo_url, sha, path)
        with self._lock:
            cached = self._manifests.get(key)
        if cached is not None:
            return copy.deepcopy(cached)
        mirror = self._mirror(repo_url, sha)
        with tempfile.TemporaryDirectory(dir=self.work_dir) as checkout:
            archive = subprocess.run(
                ["git", "--git-dir", str(mirror), "archive", "--format=tar", sha], capture_output=True, timeout=60
            )
            if archive.returncode != 0:
                raise RepoError(archive.stderr.decode(errors="replace").strip())
            subprocess.run(["tar", "-x", "-C", checkout], input=archive.stdout, check=True, capture_output=True)
            app_dir = Path(checkout) / path
            if not app_dir.is_dir():
                raise RepoError(f"{path}: app path does not exist")
            kustomize = any((app_dir / name).exists() for name in KUSTOMIZATION_FILES)
            if kustomize:
                result = subprocess.run(
                    [*self.kustomize_cmd, str(app_dir)], capture_output=True, text=True, timeout=120
                )
                if result.returncode != 0:
                    raise RepoError(
                        f"`kustomize build {path}` failed exit status {result.returncode}: {result.stderr.strip()}"
                    )
                documents = list(YAML(typ="safe").load_all(result.stdout))
            else:
                documents = []
                for file in sorted(app_dir.iterdir()):
                    if file.suffix in (".yaml", ".yml", ".json"):
                        documents.extend(YAML(typ="safe").load_all(file.read_text()))
        objects = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind")]
        with self._lock:
            self._manifests[key] = objects
            self._source_types[key] = "Kustomize" if kustomize else "Directory"
        return copy.deepcopy(objects)
