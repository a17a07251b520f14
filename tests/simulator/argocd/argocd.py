"""ArgoCD: one simulated Argo CD installation (API rules, application controller, repo server,
projects, accounts) managing one simulated cluster."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tests.simulator.argocd.controller import ApplicationController
from tests.simulator.argocd.faults import ArgoFaults
from tests.simulator.argocd.projects import DEFAULT_PROJECT_FILE, Projects, projects_from_file
from tests.simulator.argocd.rbac import Rbac
from tests.simulator.argocd.repo import RepoServer
from tests.simulator.argocd.service import ApplicationService
from tests.simulator.argocd.store import ApplicationStore

DEFAULT_TOKEN = "sim-argocd-token"


class ArgoCD:
    def __init__(
        self,
        cluster: Any,
        *,
        work_dir: Path,
        kustomize_cmd: list[str],
        projects: list[dict] | None = None,
        project_file: Path = DEFAULT_PROJECT_FILE,
        source_repos: list[str] | None = None,
        namespaces: list[str] | None = None,
        reconcile_lag: float = 0.2,
        reconcile_period: float = 30.0,
        token: str = DEFAULT_TOKEN,
        username: str = "admin",
        password: str = "sim-password",
        policy_csv: str = "",
        tokens: dict[str, str] | None = None,
        namespace: str = "argocd",
    ) -> None:
        """``projects`` (AppProject objects) default to ``project_file`` with the installer's edits
        (``source_repos``, ``namespaces``: see projects_from_file). ``tokens`` maps more bearer tokens
        to accounts, whose rights come from ``policy_csv`` (Argo CD's argocd-rbac-cm policy.csv)."""
        self.cluster = cluster
        self.faults = ArgoFaults()
        self.projects = Projects(
            projects
            if projects is not None
            else projects_from_file(project_file, source_repos=source_repos, namespaces=namespaces)
        )
        self.rbac = Rbac(
            policy_csv=policy_csv, passwords={username: password}, tokens={token: username, **(tokens or {})}
        )
        self.store = ApplicationStore(namespace)
        self.repo = RepoServer(Path(work_dir) / "repo-server", kustomize_cmd)
        self.controller = ApplicationController(
            self.store,
            cluster,
            self.repo,
            self.projects,
            lambda: self.faults,
            reconcile_lag=reconcile_lag,
            reconcile_period=reconcile_period,
        )
        self.service = ApplicationService(
            self.store, self.controller, self.repo, self.projects, self.rbac, self.faults, cluster
        )
        self._started = False

    def start(self) -> ArgoCD:
        if not self._started:
            self.controller.start()
            self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self.controller.stop()
            self._started = False

    def wait_idle(self, timeout: float = 30.0) -> None:
        self.controller.wait_idle(timeout)

    def set_faults(self, **switches: Any) -> None:
        unknown = set(switches) - set(ArgoFaults.names())
        if unknown:
            raise ValueError(f"unknown Argo CD fault switches: {sorted(unknown)}")
        candidate = dataclasses.replace(self.faults, **switches)
        candidate.validate()
        for name, value in switches.items():
            setattr(self.faults, name, value)

    def clear_faults(self) -> None:
        for field in dataclasses.fields(ArgoFaults):
            setattr(self.faults, field.name, field.default)

    def expire_sessions(self) -> None:
        self.rbac.expire_sessions()
