"""The GitOps repository: commit rendered manifests and find them again.

The commit flow follows argocd-image-updater and Kargo's git steps: fetch, hard-reset a working
clone we own to the remote branch, write the files, let git compare the bytes, commit only when
something changed, push. With 1,000 models in the repo the whole-tree commands dominate a deploy,
so the common case is narrowed without changing its result: ``ls-remote`` first and fetch only a
branch that moved, skip the reset when the clone is known to be exactly the start commit (see
``clone_state``), stage only the paths the request touches, and commit the index with
``write-tree`` + ``commit-tree`` (the tree comparison is the no-change check). GitPython reports a
rejected push in ``PushInfo`` flags instead of raising, so every push result is inspected; a
non-fast-forward rejection means another writer got there first and is answered with fetch +
rebase + push again, a bounded number of times.

One deploy is one commit whose trailers (``Model-Name: iris`` ...) say what it is, so a deploy
that crashed after pushing is recognised on the next attempt: the same request writes the same
bytes, git sees no change, and the existing head is returned.
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import git
from git import Blob, GitCommandError, InvalidGitRepositoryError, NoSuchPathError, Repo, Submodule, Tree
from git.remote import PushInfo

from control_api.adapters.gitops.access import RemoteAccess
from control_api.adapters.gitops.clone_state import head_branch, mark_clean, mark_dirty, read_clean_state, ref_sha
from control_api.adapters.gitops.errors import (
    GitAuthFailed,
    GitConflict,
    GitPushRejected,
    GitRemoteNotFound,
    GitUnavailable,
)
from control_api.adapters.gitops.lock import workdir_lock
from control_api.adapters.gitops.maintenance import pack_loose_objects_if_many
from control_api.adapters.gitops.messages import (
    clean_whitespace,
    format_commit_message,
    message_has_trailer,
    parse_trailer_block,
    trailer_paragraphs,
)
from control_api.adapters.gitops.types import CommitInfo, CommitRequest, CommitResult
from control_api.adapters.gitops.worktree import apply_request, checked_path, touched_paths, write_files
from control_api.errors import InvalidRequestError, MlopsError, NotFoundError
from control_api.settings import GitSettings

__all__ = ["CommitInfo", "CommitRequest", "CommitResult", "GitOpsRepo"]

WORK_BRANCH = "mlops-work"
SEED_BRANCH = "mlops-seed"
SEED_MESSAGE = "Initialise GitOps repository\n"
NETWORK_TIMEOUT_SECONDS = 120.0
RETRY_BACKOFF_SECONDS = 0.05

FIELD, RECORD = "\x1f", "\x1e"
LOG_FORMAT = "%x1f".join(["%H", "%P", "%an", "%ae", "%aI", "%s", "%(trailers:only,unfold)", "%B"]) + "%x1e"

PUSH_FAILED = PushInfo.ERROR | PushInfo.REJECTED | PushInfo.REMOTE_REJECTED | PushInfo.REMOTE_FAILURE
# A concurrent push to the same ref can lose the ref lock on the server; that is a race, not a refusal.
REF_LOCK_RACE = re.compile(r"failed to (update|lock) ref|cannot lock ref|incorrect old value", re.IGNORECASE)
AUTH_FAILURE = re.compile(
    r"authentication failed|could not read (username|password)|access denied|invalid username or password"
    r"|returned error: 40[13]|permission denied \(publickey|http basic: access denied",
    re.IGNORECASE,
)
REPOSITORY_MISSING = re.compile(r"repository .*not found|returned error: 404", re.IGNORECASE)
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
# Paths in a request are file names, never globs: "apps/[x]" must stage that directory only.
LITERAL_PATHS = {"GIT_LITERAL_PATHSPECS": "1"}


class GitOpsRepo:
    def __init__(
        self,
        settings: GitSettings,
        remote_url: str,
        workdir: Path,
        initial_files: dict[str, bytes] | None = None,
    ) -> None:
        self._settings = settings
        self._access = RemoteAccess.from_settings(remote_url, settings)
        self._workdir = Path(workdir).resolve()
        self._initial_files = {checked_path(path): content for path, content in (initial_files or {}).items()}
        self._env = self._access.environment(settings.author_name, settings.author_email)

    @property
    def remote_url(self) -> str:
        """The remote without credentials: safe to log and to show to users."""
        return self._access.url

    @property
    def branch(self) -> str:
        return self._settings.branch

    # ---- public API --------------------------------------------------------------------------

    def ensure_remote(self) -> None:
        """Create a missing file:// remote (bare, seeded with ``initial_files``); other remotes are left alone."""
        path = self._access.local_path
        if path is None:
            return
        with self._session("create") as repo:
            if not path.exists() or (path.is_dir() and not any(path.iterdir())):
                path.mkdir(parents=True, exist_ok=True, mode=0o700)
                path.chmod(0o700)  # the service's own repository: owner-only, whatever the umask
                git.Git().init("--bare", f"--initial-branch={self.branch}", str(path))
            self._sync(repo, self.branch)
            if self._remote_sha(repo, self.branch) is None:
                self._seed(repo)

    def commit(self, request: CommitRequest) -> CommitResult:
        message = format_commit_message(request.subject, request.body, request.trailers)
        review_branch = self._review_branch(request.branch)
        for path in (*request.files, *request.replace_dirs, *request.delete_paths):
            checked_path(path)  # refuse a bad request before touching the clone
        with self._session("commit to") as repo:
            self._sync(repo, self.branch, *([review_branch] if review_branch else []))
            if self._remote_sha(repo, self.branch) is None:
                self._seed(repo)
            if review_branch is None:
                return self._commit_direct(repo, request, message)
            return self._commit_review(repo, request, message, review_branch)

    def revert(self, sha: str, subject: str, body: str, trailers: dict[str, str]) -> CommitResult:
        """Push a commit on the configured branch that undoes commit ``sha`` (``git revert``).

        Raises ``GitConflict`` when the change cannot be undone cleanly (a later commit touched the
        same lines) or the branch moved while pushing; the caller tries again later."""
        message = format_commit_message(subject, body, trailers)
        target = self.branch
        upstream = f"refs/remotes/origin/{target}"
        with self._session("revert on") as repo:
            self._sync(repo, target)
            base = self._existing_sha(repo, upstream)
            base_tree = self._start_from(repo, base, upstream)
            mark_dirty(repo)
            try:
                repo.git.revert("--no-commit", sha)
            except GitCommandError as error:
                with contextlib.suppress(GitCommandError):
                    repo.git.revert("--abort")
                raise GitConflict(f"commit {sha[:12]} cannot be reverted cleanly: {_stderr_text(error)}") from None
            tree = self._commit_index(repo, message, base, base_tree)
            if tree is None:
                mark_clean(repo, base, base_tree)
                return CommitResult(sha=base, changed=False, branch=target, pushed=False)
            if not self._push(repo, target):
                raise GitConflict(f"{target} moved while reverting {sha[:12]}; try again")
            return self._pushed(repo, tree, target)

    def delete_branch(self, branch: str) -> bool:
        """Delete a review branch on the remote; False when it is not there."""
        review_branch = self._review_branch(branch)
        if review_branch is None:
            raise InvalidRequestError(f"{branch!r} is not a review branch")
        with self._session("delete a branch of") as repo:
            self._sync(repo, self.branch, review_branch)
            if self._remote_sha(repo, review_branch) is None:
                return False
            try:
                repo.remote("origin").push(f":refs/heads/{review_branch}", kill_after_timeout=NETWORK_TIMEOUT_SECONDS)
            except GitCommandError as error:
                raise self._translate(error, "delete a branch of") from None
            return True

    def find_by_trailer(self, key: str, value: str, branch: str | None = None) -> CommitInfo | None:
        """The newest commit on ``branch`` whose message has the line ``key: value``.

        Matching every line (not only git's final trailer block) finds the change after a forge
        squash-merged or rebased it, when the trailers sit inside the squashed message body.
        """
        with self._session("search") as repo:
            self._sync(repo, branch or self.branch)
            ref = self._remote_ref(repo, branch or self.branch)
            if ref is None:
                return None
            for info, message in self._log(repo, ref, grep={key: value}):
                if message_has_trailer(message, key, value):
                    return info
            return None

    def history(
        self,
        path_prefix: str | None = None,
        trailer_filter: dict[str, str] | None = None,
        limit: int = 100,
    ) -> list[CommitInfo]:
        """Commits on the configured branch, newest first, optionally touching ``path_prefix``."""
        paths = [checked_path(path_prefix)] if path_prefix else []
        trailer_filter = trailer_filter or {}
        with self._session("read history of") as repo:
            self._sync(repo, self.branch)
            ref = self._remote_ref(repo, self.branch)
            if ref is None or limit <= 0:
                return []
            max_count = None if trailer_filter else limit
            found: list[CommitInfo] = []
            for info, message in self._log(repo, ref, grep=trailer_filter, paths=paths, max_count=max_count):
                if all(message_has_trailer(message, key, value) for key, value in trailer_filter.items()):
                    found.append(info)
                    if len(found) >= limit:
                        break
            return found

    def read_files(self, revision: str, dir_path: str) -> dict[str, bytes]:
        """Files under ``dir_path`` (repo-relative keys) at a commit sha or a remote branch name."""
        with self._session("read") as repo:
            found = self._entry_at(repo, revision, dir_path)
            if isinstance(found, Blob):
                return {str(found.path): found.data_stream.read()}
            if not isinstance(found, Tree):
                return {}  # absent, or a submodule, which holds no files of this repository
            return {str(item.path): item.data_stream.read() for item in found.traverse() if isinstance(item, Blob)}

    def folders(self, revision: str, dir_path: str) -> list[str]:
        """Names of the folders directly in ``dir_path`` at a commit sha or a remote branch name,
        sorted; no file is read."""
        with self._session("read") as repo:
            found = self._entry_at(repo, revision, dir_path)
            return sorted(tree.name for tree in found.trees) if isinstance(found, Tree) else []

    def _entry_at(self, repo: Repo, revision: str, dir_path: str) -> Tree | Blob | Submodule | None:
        """The tree or file at ``dir_path`` in ``revision``; None when the path is absent there."""
        directory = None if dir_path in ("", ".", "/") else checked_path(dir_path)
        sha = self._resolve_local(repo, revision) if FULL_SHA.match(revision) else None
        if sha is None:
            self._fetch(repo)
            sha = self._resolve_local(repo, revision)
        if sha is None:
            raise NotFoundError(f"revision {revision!r} is not in the GitOps repository", code="git_revision_not_found")
        found: Tree | Blob | Submodule = repo.commit(sha).tree
        if directory is None:
            return found
        try:
            return found / directory
        except KeyError:
            return None

    def last_change(self, revision: str, path: str) -> CommitInfo | None:
        """The newest commit at or before ``revision`` (a sha) that changed ``path``: the commit whose
        manifests a cluster synced to ``revision`` runs for that path."""
        with self._session("read history of") as repo:
            sha = self._resolve_local(repo, revision) if FULL_SHA.match(revision) else None
            if sha is None:
                self._fetch(repo)
                sha = self._resolve_local(repo, revision)
            if sha is None:
                return None
            for info, _message in self._log(repo, sha, grep={}, paths=[checked_path(path)], max_count=1):
                return info
            return None

    def head(self, branch: str | None = None) -> str:
        """The remote head of ``branch`` (default: the configured one) after a fetch."""
        name = branch or self.branch
        with self._session("read") as repo:
            self._sync(repo, name)
            sha = self._remote_sha(repo, name)
        if sha is None:
            raise NotFoundError(f"branch {name!r} does not exist in the GitOps repository", code="git_branch_not_found")
        return sha

    def ping(self) -> None:
        """Raise GitUnavailable (or GitAuthFailed / GitRemoteNotFound) when the remote cannot be listed."""
        client = git.Git()
        client.update_environment(**self._env)
        try:
            client.ls_remote("--heads", self._access.url, kill_after_timeout=NETWORK_TIMEOUT_SECONDS)
        except GitCommandError as error:
            raise self._translate(error, "reach") from None

    # ---- commit flows ------------------------------------------------------------------------

    def _commit_direct(self, repo: Repo, request: CommitRequest, message: str) -> CommitResult:
        target = self.branch
        upstream = f"refs/remotes/origin/{target}"
        base = self._existing_sha(repo, upstream)
        base_tree = self._start_from(repo, base, upstream)
        self._apply_and_stage(repo, request)
        tree = self._commit_index(repo, message, base, base_tree)
        if tree is None:
            mark_clean(repo, base, base_tree)
            return CommitResult(sha=base, changed=False, branch=target, pushed=False)
        retries = self._settings.push_retries
        for attempt in range(retries + 1):
            if self._push(repo, target):
                return self._pushed(repo, tree, target)
            if attempt == retries:
                break
            # Jitter keeps two services that raced once from racing again in lockstep.
            time.sleep(RETRY_BACKOFF_SECONDS * (2**attempt) * (1 + random.random()))
            self._fetch_branches(repo, target)
            self._rebase(repo, upstream)
            tree = repo.git.rev_parse("HEAD^{tree}")
            head = self._existing_sha(repo, "HEAD")
            if head == self._remote_sha(repo, target):
                # The other writer pushed exactly our change; rebase dropped our now-empty commit.
                mark_clean(repo, head, tree)
                return CommitResult(sha=head, changed=False, branch=target, pushed=False)
        raise GitUnavailable(
            f"push to {target} of {self.remote_url} lost the race to other writers {retries + 1} times; try again",
            code="git_push_contended",
        )

    def _commit_review(self, repo: Repo, request: CommitRequest, message: str, branch: str) -> CommitResult:
        existing = self._remote_sha(repo, branch)
        # A re-run after a crash continues the deploy's own branch, so identical bytes mean no new commit.
        start_branch = branch if existing else self.branch
        start_ref = f"refs/remotes/origin/{start_branch}"
        start = self._existing_sha(repo, start_ref)
        start_tree = self._start_from(repo, start, start_ref)
        self._apply_and_stage(repo, request)
        tree = self._commit_index(repo, message, start, start_tree)
        if tree is None:
            mark_clean(repo, start, start_tree)
            return CommitResult(sha=start, changed=False, branch=start_branch, pushed=False)
        if not self._push(repo, branch, lease=existing or ""):
            raise GitConflict(f"review branch {branch} changed on the remote while this deploy pushed to it")
        return self._pushed(repo, tree, branch)

    def _pushed(self, repo: Repo, tree: str, branch: str) -> CommitResult:
        head = self._existing_sha(repo, "HEAD")
        mark_clean(repo, head, tree)
        pack_loose_objects_if_many(repo)
        return CommitResult(sha=head, changed=True, branch=branch, pushed=True)

    def _seed(self, repo: Repo) -> None:
        """First commit of an empty remote: the configured ``initial_files`` (possibly none)."""
        mark_dirty(repo)
        self._clear_interrupted_state(repo)
        with contextlib.suppress(GitCommandError):  # fails when there is no leftover seed branch
            repo.git.update_ref("-d", f"refs/heads/{SEED_BRANCH}")
        repo.git.symbolic_ref("HEAD", f"refs/heads/{SEED_BRANCH}")
        repo.git.read_tree("--empty")
        repo.git.clean("-ffdx")
        write_files(self._workdir, self._initial_files)
        repo.git.add("--all", "--force")
        repo.git.commit("--no-verify", "--allow-empty", "--cleanup=whitespace", "-m", SEED_MESSAGE)
        pushed = self._push(repo, self.branch, local_branch=SEED_BRANCH)
        self._sync(repo, self.branch)
        if not pushed and self._remote_sha(repo, self.branch) is None:
            raise GitUnavailable(f"could not create branch {self.branch} on {self.remote_url}")

    # ---- git steps ---------------------------------------------------------------------------

    @contextmanager
    def _session(self, action: str) -> Iterator[Repo]:
        """Hold the workdir lock and an open clone; leftover git errors become project errors."""
        with workdir_lock(self._workdir):
            repo = self._open_clone()
            try:
                yield repo
            except GitCommandError as error:
                raise self._translate(error, action) from None
            except OSError as error:
                raise GitUnavailable(f"could not {action} the working clone {self._workdir}: {error}") from None
            finally:
                repo.close()

    def _open_clone(self) -> Repo:
        if (self._workdir / ".git").is_dir():
            try:
                repo = Repo(self._workdir)
                if repo.remote("origin").url == self._access.url:
                    repo.git.update_environment(**self._env)
                    return repo
                repo.close()
            except (InvalidGitRepositoryError, NoSuchPathError, ValueError):
                pass
        # The workdir is a cache we own: anything unexpected in it is thrown away.
        if self._workdir.exists():
            shutil.rmtree(self._workdir)
        repo = Repo.init(self._workdir, mkdir=True)
        repo.create_remote("origin", self._access.url)
        repo.git.update_environment(**self._env)
        return repo

    def _sync(self, repo: Repo, *branches: str) -> None:
        """Bring the remote-tracking refs of ``branches`` up to date, fetching only those that moved.

        ``ls-remote`` costs one round trip and no object negotiation, and after our own push the
        tracking ref is already current, so most deploys fetch nothing.
        """
        try:
            # GitPython types ls_remote's result as a union of its process modes; called plainly it is git's text.
            listing = str(
                repo.git.ls_remote(
                    "--heads",
                    "origin",
                    *(f"refs/heads/{branch}" for branch in branches),
                    kill_after_timeout=NETWORK_TIMEOUT_SECONDS,
                )
            )
        except GitCommandError as error:
            raise self._translate(error, "fetch from") from None
        advertised = {}
        for line in listing.splitlines():
            sha, _, ref = line.partition("\t")
            advertised[ref.strip()] = sha.strip()
        moved = []
        for branch in dict.fromkeys(branches):
            remote, local = advertised.get(f"refs/heads/{branch}"), self._remote_sha(repo, branch)
            if remote is None and local is not None:
                repo.git.update_ref("-d", f"refs/remotes/origin/{branch}")  # what fetch --prune would do
            elif remote is not None and remote != local:
                moved.append(branch)
        if moved:
            self._fetch_branches(repo, *moved)

    def _fetch_branches(self, repo: Repo, *branches: str) -> None:
        refspecs = [f"+refs/heads/{branch}:refs/remotes/origin/{branch}" for branch in branches]
        try:
            repo.git.fetch("--no-tags", "origin", *refspecs, kill_after_timeout=NETWORK_TIMEOUT_SECONDS)
        except GitCommandError as error:
            raise self._translate(error, "fetch from") from None

    def _fetch(self, repo: Repo) -> None:
        """Fetch every branch (for reads by an arbitrary revision name)."""
        try:
            repo.git.fetch(
                "--prune",
                "--no-tags",
                "origin",
                "+refs/heads/*:refs/remotes/origin/*",
                kill_after_timeout=NETWORK_TIMEOUT_SECONDS,
            )
        except GitCommandError as error:
            raise self._translate(error, "fetch from") from None

    def _start_from(self, repo: Repo, sha: str, ref: str) -> str:
        """Make the work branch, the index and the files exactly commit ``sha`` (``ref``); return its tree."""
        state = read_clean_state(repo)
        on_work_branch = head_branch(repo) == f"refs/heads/{WORK_BRANCH}"
        head = ref_sha(repo, "HEAD")
        if state is not None and on_work_branch and head == state.commit:
            if head == sha:
                return state.tree  # our last flow left the clone exactly here
            # Clean at another commit (someone else pushed): a plain checkout moves only what differs.
            mark_dirty(repo)
            try:
                repo.git.checkout("-B", WORK_BRANCH, ref)
            except GitCommandError:
                self._checkout(repo, ref)  # something unexpected in the files: the full reset
        else:
            self._checkout(repo, ref)
        return repo.git.rev_parse(f"{sha}^{{tree}}")

    def _checkout(self, repo: Repo, start: str) -> None:
        mark_dirty(repo)
        self._clear_interrupted_state(repo)
        repo.git.checkout("--force", "-B", WORK_BRANCH, start)
        repo.git.clean("-ffdx")

    def _clear_interrupted_state(self, repo: Repo) -> None:
        """Undo what a process killed in the middle of a git command left behind (we hold the lock)."""
        git_dir = Path(repo.git_dir)
        (git_dir / "index.lock").unlink(missing_ok=True)
        for state in ("rebase-merge", "rebase-apply"):
            if (git_dir / state).exists():
                shutil.rmtree(git_dir / state)

    def _apply_and_stage(self, repo: Repo, request: CommitRequest) -> None:
        """Write the request into the clone and stage exactly the paths it touches."""
        mark_dirty(repo)
        apply_request(self._workdir, request)
        present, gone = touched_paths(self._workdir, request)
        if present:
            # --force: a .gitignore in the GitOps repo must not silently drop a manifest we wrote.
            repo.git.add("--all", "--force", "--", *present, env=LITERAL_PATHS)
        if gone:
            repo.git.rm("-r", "-q", "--force", "--cached", "--ignore-unmatch", "--", *gone, env=LITERAL_PATHS)

    def _commit_index(self, repo: Repo, message: str, parent: str, parent_tree: str) -> str | None:
        """Commit the index on ``parent``; return the new tree, or None when it equals the parent's.

        Comparing trees is git comparing the bytes. ``commit-tree`` skips the whole-index refresh
        and status that ``git commit`` runs; the message gets the same ``--cleanup=whitespace``
        treatment, which keeps markdown "# headings" in bodies.
        """
        tree = repo.git.write_tree()
        if tree == parent_tree:
            return None
        commit = repo.git.commit_tree(tree, "-p", parent, "-m", clean_whitespace(message))
        subject = message.split("\n", 1)[0]
        # The old value makes git refuse if the work branch moved under us.
        repo.git.update_ref("-m", f"commit: {subject}", f"refs/heads/{WORK_BRANCH}", commit, parent)
        return tree

    def _push(self, repo: Repo, branch: str, *, lease: str | None = None, local_branch: str = WORK_BRANCH) -> bool:
        """Push; True on success, False when another writer updated the branch first."""
        # A named local ref, not HEAD: GitPython cannot map "HEAD" to a Reference and drops the result line.
        refspec = f"refs/heads/{local_branch}:refs/heads/{branch}"
        options: dict = {"kill_after_timeout": NETWORK_TIMEOUT_SECONDS}
        if lease is not None:
            options["force_with_lease"] = f"refs/heads/{branch}:{lease}"
        try:
            results = repo.remote("origin").push(refspec, **options)
        except GitCommandError as error:
            raise self._translate(error, "push to") from None
        failed = [result for result in results if result.flags & PUSH_FAILED]
        if results and not failed and results.error is None:
            return True
        for result in failed:
            if result.flags & PushInfo.REJECTED:
                return False
            if result.flags & PushInfo.REMOTE_REJECTED and REF_LOCK_RACE.search(result.summary):
                return False
            if result.flags & PushInfo.REMOTE_REJECTED:
                raise GitPushRejected(
                    f"{self.remote_url} refused the push to {branch}: {self._access.redact(result.summary.strip())}"
                )
        if isinstance(results.error, GitCommandError):
            raise self._translate(results.error, "push to")
        detail = "; ".join(self._access.redact(result.summary.strip()) for result in failed) or "no result reported"
        raise GitUnavailable(f"push to {branch} of {self.remote_url} failed: {detail}")

    def _rebase(self, repo: Repo, upstream: str) -> None:
        try:
            repo.git.rebase(upstream)
        except GitCommandError:
            conflicted = repo.git.diff("--name-only", "--diff-filter=U").split()
            with contextlib.suppress(GitCommandError):  # the rebase stopped before it had state to abort
                repo.git.rebase("--abort")
            self._checkout(repo, upstream)
            listed = ", ".join(conflicted) or "(unknown paths)"
            raise GitConflict(
                f"another change to {self.branch} touched the same files as this deploy: {listed}",
                details={"paths": conflicted},
            ) from None

    def _remote_sha(self, repo: Repo, branch: str) -> str | None:
        return ref_sha(repo, f"refs/remotes/origin/{branch}")

    def _existing_sha(self, repo: Repo, ref: str) -> str:
        """The commit of a ref the flow has made sure of: HEAD of the clone, or a branch fetched or seeded."""
        sha = ref_sha(repo, ref)
        if sha is None:
            raise GitUnavailable(f"{ref} is missing from the working clone {self._workdir}")
        return sha

    def _remote_ref(self, repo: Repo, branch: str) -> str | None:
        return f"refs/remotes/origin/{branch}" if self._remote_sha(repo, branch) else None

    def _resolve_local(self, repo: Repo, revision: str) -> str | None:
        return self._resolve_ref(repo, f"refs/remotes/origin/{revision}") or self._resolve_ref(repo, revision)

    @staticmethod
    def _resolve_ref(repo: Repo, ref: str) -> str | None:
        try:
            return repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}") or None
        except GitCommandError:
            return None

    def _log(
        self,
        repo: Repo,
        ref: str,
        *,
        grep: dict[str, str],
        paths: list[str] | None = None,
        max_count: int | None = None,
    ) -> Iterator[tuple[CommitInfo, str]]:
        arguments = [ref, f"--format={LOG_FORMAT}"]
        if max_count is not None:
            arguments.append(f"--max-count={max_count}")
        if grep:
            # git narrows the candidates; the caller confirms each one line by line.
            arguments += ["--fixed-strings", "--regexp-ignore-case", "--all-match"]
            arguments += [f"--grep={key}: {value}" for key, value in grep.items()]
        output = repo.git.log(*arguments, "--", *(paths or []))
        for record in output.split(RECORD):
            record = record.lstrip("\n")
            if not record:
                continue
            sha, parents, name, email, date, subject, trailer_block, message = record.split(FIELD, 7)
            trailers = {**trailer_paragraphs(message), **parse_trailer_block(trailer_block)}
            info = CommitInfo(
                sha=sha,
                subject=subject,
                author_name=name,
                author_email=email,
                date=date,
                trailers=trailers,
                parents=tuple(parents.split()),
            )
            yield info, message

    def _review_branch(self, branch: str | None) -> str | None:
        if branch is None or branch == self.branch:
            return None
        try:
            git.Git().check_ref_format("--branch", branch)
        except GitCommandError:
            raise InvalidRequestError(f"invalid branch name {branch!r}") from None
        if branch in (WORK_BRANCH, SEED_BRANCH):
            raise InvalidRequestError(f"branch name {branch!r} is reserved for the working clone")
        return branch

    def _translate(self, error: GitCommandError, action: str) -> MlopsError:
        stderr = self._access.redact(_stderr_text(error))
        message = f"could not {action} the GitOps remote {self.remote_url}: {stderr or 'git failed'}"
        if AUTH_FAILURE.search(stderr):
            return GitAuthFailed(message)
        if REPOSITORY_MISSING.search(stderr):
            return GitRemoteNotFound(message)
        return GitUnavailable(message)


def _stderr_text(error: GitCommandError) -> str:
    raw = error.stderr if isinstance(error.stderr, str) else str(error.stderr or "")
    # GitPython formats stderr as "\n  stderr: '...'"; keep just git's own words.
    text = re.sub(r"^\s*stderr:\s*'?", "", raw).rstrip("'\n ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines and error.status:
        lines = [str(error.status)]
    return " | ".join(lines[-4:])
