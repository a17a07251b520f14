"""Step ``sync``: make the target run exactly the committed revision."""

from __future__ import annotations

from typing import Any

from control_api.pipeline.step import StepContext
from control_api.pipeline.steps.commit import app_of


class SyncStep:
    name = "sync"
    status_label = "syncing"
    max_attempts = 3

    def run(self, ctx: StepContext) -> dict[str, Any]:
        app = app_of(ctx)
        revision = ctx.outputs["commit"]
        outputs = ctx.services.target.sync(app, revision, ctx.log)
        outputs["_message"] = f"synced {app.application} to {revision[:12]}"
        return outputs


class WaitStep:
    name = "wait"
    status_label = "waiting"
    max_attempts = 2

    def run(self, ctx: StepContext) -> dict[str, Any]:
        app = app_of(ctx)
        # The revision the target actually synced: the commit itself, or under automated sync the
        # branch head that holds it.
        revision = ctx.outputs.get("synced_revision") or ctx.outputs["commit"]
        outputs = ctx.services.target.wait(app, revision, ctx.settings.target.ready_timeout_seconds, ctx.log)
        outputs["_message"] = f"serving at {outputs['deployment_url']}"
        return outputs
