"""The steps after registration that end with a served URL: build, push, commit, sync, wait."""

from __future__ import annotations

from control_api.pipeline.steps.build import BuildStep
from control_api.pipeline.steps.commit import CommitStep
from control_api.pipeline.steps.push import PushStep
from control_api.pipeline.steps.sync import SyncStep, WaitStep


def serving_steps(settings) -> tuple:
    if settings.git.review_mode:
        from control_api.pipeline.steps.review import ReviewStep

        return (BuildStep(), PushStep(), CommitStep(), ReviewStep(), SyncStep(), WaitStep())
    return (BuildStep(), PushStep(), CommitStep(), SyncStep(), WaitStep())
