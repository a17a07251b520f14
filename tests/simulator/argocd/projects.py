"""AppProjects: which repos, destinations and kinds an Application may use, and its sync windows.

Rules from util/argo/argo.go (ValidatePermissions, GetAppProject) and the AppProject type's
IsSourcePermitted / IsDestinationPermitted / SyncWindows.Matches(app).CanSync(isManual) as
server/application/application.go Sync calls them. Patterns are globs, as in Argo CD.
"""

from __future__ import annotations

import copy
import fnmatch
from pathlib import Path

from ruamel.yaml import YAML

# The project's own AppProjects, as an installation applies them.
DEFAULT_PROJECT_FILE = Path(__file__).resolve().parents[3] / "argocd" / "project.yaml"
IN_CLUSTER = "https://kubernetes.default.svc"
# Argo CD creates the "default" project at start-up: everything allowed (server.go: initializeDefaultProject).
DEFAULT_PROJECT = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "AppProject",
    "metadata": {"name": "default", "namespace": "argocd"},
    "spec": {
        "sourceRepos": ["*"],
        "destinations": [{"server": "*", "namespace": "*"}],
        "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
    },
}
# What the sync_window fault adds: an always-open deny window for every application.
DENY_ALL_WINDOW = {
    "kind": "deny",
    "schedule": "* * * * *",
    "duration": "24h",
    "applications": ["*"],
    "manualSync": False,
}


def projects_from_file(
    path: Path = DEFAULT_PROJECT_FILE, *, source_repos: list[str] | None = None, namespaces: list[str] | None = None
) -> list[dict]:
    """The AppProjects in ``path``, with the edits its header asks an installer to make: the GitOps
    repository URL replaced by ``source_repos``, and ``namespaces`` added as in-cluster destinations
    of every project whose destinations are not Argo CD's own namespace only."""
    projects = [
        doc for doc in YAML(typ="safe").load_all(Path(path).read_text()) if doc and doc.get("kind") == "AppProject"
    ]
    for project in projects:
        spec = project.setdefault("spec", {})
        if source_repos is not None:
            spec["sourceRepos"] = list(source_repos)
        destinations = spec.setdefault("destinations", [])
        if namespaces and any(d.get("namespace") != "argocd" for d in destinations):
            known = {d.get("namespace") for d in destinations}
            destinations.extend({"server": IN_CLUSTER, "namespace": ns} for ns in namespaces if ns not in known)
    return projects


def _glob(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _normalize_git_url(url: str) -> str:
    """git.NormalizeGitURL, roughly: case-insensitive, no trailing slash or .git."""
    url = url.strip().lower().rstrip("/")
    return url[:-4] if url.endswith(".git") else url


class Projects:
    def __init__(self, projects: list[dict]) -> None:
        self._projects = {p["metadata"]["name"]: copy.deepcopy(p) for p in [DEFAULT_PROJECT, *projects]}

    def get(self, name: str, *, missing_fault: bool = False) -> dict | None:
        if missing_fault:
            return None
        return copy.deepcopy(self._projects.get(name or "default"))

    def names(self) -> list[str]:
        return sorted(self._projects)

    @staticmethod
    def is_source_permitted(project: dict, repo_url: str) -> bool:
        """AppProject.IsSourcePermitted: some sourceRepos glob matches the normalised URL."""
        normalized = _normalize_git_url(repo_url)
        return any(
            pattern == "*" or _glob(_normalize_git_url(pattern), normalized)
            for pattern in project["spec"].get("sourceRepos") or []
        )

    @staticmethod
    def is_destination_permitted(project: dict, server: str, namespace: str) -> bool:
        """AppProject.IsDestinationPermitted: some destination's server and namespace globs match."""
        for destination in project["spec"].get("destinations") or []:
            if _glob(destination.get("server") or "*", server) and _glob(destination.get("namespace") or "", namespace):
                return True
        return False

    @staticmethod
    def is_kind_permitted(project: dict, group: str, kind: str, namespaced: bool) -> bool:
        """AppProject.IsGroupKindPermitted: cluster kinds need clusterResourceWhitelist; namespaced kinds
        need namespaceResourceWhitelist when it is set (absent means all)."""
        spec = project["spec"]
        if namespaced:
            whitelist = spec.get("namespaceResourceWhitelist")
            if whitelist is None:
                return True
        else:
            whitelist = spec.get("clusterResourceWhitelist") or []
        return any(_glob(item.get("group", ""), group) and _glob(item.get("kind", ""), kind) for item in whitelist)

    @staticmethod
    def can_sync(project: dict, app: dict, *, manual: bool, extra_windows: list[dict] = ()) -> bool:
        """SyncWindows.Matches(app).CanSync(isManual). Windows are treated as open all the time (their
        cron schedule is not evaluated): a matching deny window blocks, unless the sync is manual and
        every matching deny window allows manualSync."""
        windows = list(project["spec"].get("syncWindows") or []) + list(extra_windows)
        name = app["metadata"]["name"]
        namespace = (app["spec"].get("destination") or {}).get("namespace", "")
        server = (app["spec"].get("destination") or {}).get("server", "")
        matching_deny = [
            w
            for w in windows
            if w.get("kind") == "deny"
            and (
                any(_glob(p, name) for p in w.get("applications") or [])
                or any(_glob(p, namespace) for p in w.get("namespaces") or [])
                or any(_glob(p, server) for p in w.get("clusters") or [])
            )
        ]
        if not matching_deny:
            return True
        return manual and all(w.get("manualSync") for w in matching_deny)
