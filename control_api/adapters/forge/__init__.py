"""Forge adapter: pull (merge) requests on GitHub, GitLab and Gitea/Forgejo for review-mode deploys."""

from control_api.adapters.forge.errors import ForgeAuthFailed, ForgeRequestRejected, ForgeUnavailable
from control_api.adapters.forge.factory import make_forge
from control_api.adapters.forge.gitea import GiteaForge
from control_api.adapters.forge.github import GitHubForge
from control_api.adapters.forge.gitlab import GitLabForge
from control_api.adapters.forge.pr_body import render_pr_body
from control_api.adapters.forge.types import Forge, PullRequest

__all__ = [
    "Forge",
    "ForgeAuthFailed",
    "ForgeRequestRejected",
    "ForgeUnavailable",
    "GitHubForge",
    "GitLabForge",
    "GiteaForge",
    "PullRequest",
    "make_forge",
    "render_pr_body",
]
