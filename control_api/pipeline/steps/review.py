"""Step ``review`` (review mode only): wait until the deploy's change reaches the target branch.

The change is found by its ``Deployment-Id`` trailer, not by SHA, so a merge commit, a squash merge
and a rebase merge all count. While it waits the deployment's status is ``awaiting_review`` and it
holds no worker: each look is one call, then the step answers ``NotYet``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from control_api.errors import DeploymentTimedOut, TerminalError
from control_api.pipeline.outputs import COMMIT, COMMIT_CHANGED, POLL_DEADLINE, PULL_REQUEST_NUMBER, PULL_REQUEST_URL
from control_api.pipeline.step import NotYet, StepContext, StepResult
from control_api.provider import Provider

if TYPE_CHECKING:
    from control_api.adapters.forge.types import Forge
    from control_api.adapters.gitops.repo import GitOpsRepo


class ReviewStep:
    name = "review"
    status_label = "awaiting_review"
    max_attempts = 5

    def __init__(self, gitops: Provider[GitOpsRepo], forge: Provider[Forge | None]) -> None:
        self.gitops = gitops
        self.forge = forge

    def run(self, ctx: StepContext) -> StepResult | NotYet:
        """One look at the target branch and the pull request; ``NotYet`` until it is merged."""
        settings = ctx.settings
        gitops = self.gitops()
        forge = self.forge()
        now = time.time()
        deadline = float(ctx.outputs.get(POLL_DEADLINE) or now + settings.forge.review_timeout_seconds)
        number = ctx.outputs.get(PULL_REQUEST_NUMBER)
        merged = gitops.find_by_trailer("Deployment-Id", ctx.deployment_id, branch=settings.git.branch)
        if merged is not None:
            ctx.log(f"change merged into {settings.git.branch} as {merged.sha[:12]}")
            return StepResult({COMMIT: merged.sha, COMMIT_CHANGED: True}, f"merged as {merged.sha[:12]}")
        if forge is not None and number is not None:
            pr = forge.get_pull_request(int(number))
            if pr.state == "closed" and not pr.merged:
                raise TerminalError(f"pull request {pr.url} was closed without merging", code="review_rejected")
        if now >= deadline:
            raise DeploymentTimedOut(
                f"the pull request was not merged within {settings.forge.review_timeout_seconds:g} s; "
                "retry the deployment to keep waiting",
                code="review_timed_out",
            )
        return NotYet(
            retry_after=min(settings.forge.merge_poll_seconds, max(0.0, deadline - now)),
            message=f"awaiting review of {ctx.outputs.get(PULL_REQUEST_URL) or 'the pull request'}",
            progress={POLL_DEADLINE: deadline},
        )
