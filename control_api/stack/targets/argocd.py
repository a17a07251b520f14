"""Target ``argocd``: a cluster, through the Argo CD API and the Kubernetes API."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from control_api.pipeline.factory import serving_pipelines
from control_api.stack.targets.kind import Check, TargetKind
from control_api.stack.targets.serving import serving_checks, serving_settings_problems
from control_api.targets.argocd import ArgoCDTarget

if TYPE_CHECKING:
    from control_api.services import Services
    from control_api.settings import Settings

# What Argo CD reads as a commit SHA when it resolves a ``targetRevision`` (7 to 40 hex digits).
COMMIT_SHA = re.compile(r"^[0-9a-f]{7,40}$")


def settings_problems(settings: Settings) -> list[str]:
    problems = serving_settings_problems(settings)
    argo = settings.argocd
    if not argo.server_url:
        problems.append("target.kind=argocd needs argocd.server_url (MLOPS_ARGOCD__SERVER_URL)")
    if argo.token is None and not (argo.username and argo.password):
        problems.append(
            "target.kind=argocd needs argocd.token, or argocd.username with argocd.password "
            "(MLOPS_ARGOCD__TOKEN, MLOPS_ARGOCD__USERNAME, MLOPS_ARGOCD__PASSWORD)"
        )
    if argo.automated_sync and COMMIT_SHA.match(settings.git.branch):
        problems.append(
            f"argocd.automated_sync is on but git.branch ({settings.git.branch!r}) reads as a commit SHA: the "
            "Applications would pin that SHA as their targetRevision, and automated sync only ever syncs the "
            "targetRevision, so no deploy would reach the cluster (MLOPS_ARGOCD__AUTOMATED_SYNC, MLOPS_GIT__BRANCH)"
        )
    return problems


def checks(services: Services) -> dict[str, Check]:
    return {
        **serving_checks(services),
        "argocd": lambda: services.argocd.ping(),
        "kubernetes": lambda: services.kubernetes.ping(),
    }


def make_target(services: Services) -> ArgoCDTarget:
    return ArgoCDTarget(
        services.settings,
        argocd=lambda: services.argocd,
        kubernetes=lambda: services.kubernetes,
        gitops=lambda: services.gitops,
    )


KIND = TargetKind(
    name="argocd",
    settings_problems=settings_problems,
    checks=checks,
    pipelines=serving_pipelines,
    make_target=make_target,
)
