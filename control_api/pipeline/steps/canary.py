"""Step ``canary``: release a new version beside the endpoint's stable one in weighted steps.

Every change the cluster sees is a commit: each weight step (``Canary-Step: i/n``), the promotion
that makes the new version stable and removes the old, or the abort that restores the stable
commit's files. Each is synced and awaited like a deploy. Between steps the canary's own model
servers' metrics decide (``canary.analysis``): pass goes on, fail aborts, too few requests waits
another interval (at most ``MAX_INCONCLUSIVE`` times, then aborts).

The step is a state machine whose every look is short: it commits, syncs, looks at the rollout or
at the clock, and answers ``NotYet`` in between, so a canary holds no worker while its interval
runs. Its state (``canary_*`` outputs) is saved after every look and survives a restart and a retry;
a commit phase first looks for the commit an interrupted attempt already pushed (same deployment id
and ``Canary-Step``). ``POST /mlops/deployments/{id}/promote`` and ``.../abort`` save
``canary_manual``, which the next look acts on.

With nothing served at the endpoint yet there is no stable version to compare with: the new one is
promoted at once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from control_api.adapters.gitops.types import CommitInfo, CommitRequest
from control_api.errors import DeploymentTimedOut, InvalidRequestError
from control_api.pipeline.canary.analysis import Counts, Verdict, judge
from control_api.pipeline.outputs import (
    APPLICATION,
    COMMIT,
    COMMIT_CHANGED,
    DEPLOYMENT_URL,
    EXTERNAL_IP,
    FINAL_STATUS,
    GITOPS_PATH,
    IMAGE_URI,
    MODEL_VERSION,
    POLL_DEADLINE,
    POLL_DELAY,
    POLL_REASON,
    POLL_STATE,
    RUN_ID,
    SYNCED_REVISION,
    TARGET,
)
from control_api.pipeline.step import NotYet, StepContext, StepResult
from control_api.pipeline.steps.commit import ApplicationFiles, app_of, render_files, require_endpoint_of, spec_of
from control_api.pipeline.steps.rollback import deploy_history
from control_api.pipeline.steps.sync import FIRST_LOOK_SECONDS, TimedOut, look_until_ready
from control_api.provider import Provider
from control_api.targets.base import AppRef, DeploymentTarget, Ready

if TYPE_CHECKING:
    from control_api.adapters.gitops.repo import GitOpsRepo

# Outputs of the canary step (kept across retries, unlike ``poll_*``).
PHASE = "canary_phase"
STEP_INDEX = "canary_step_index"
STABLE = "canary_stable"  # {sha, version, image, run_id} of the commit the canary started from
PHASE_COMMIT = "canary_commit"
BASELINE = "canary_baseline"
INTERVAL_ENDS = "canary_interval_ends"
INCONCLUSIVE = "canary_inconclusive"
EVIDENCE = "canary_evidence"  # one entry per analysed step
SPLIT = "canary_split"
ABORT_REASON = "canary_abort_reason"
MANUAL = "canary_manual"  # "promote" | "abort", saved by the API
MANUAL_BY = "canary_manual_by"
OUTCOME = "canary_outcome"  # "promoted" | "aborted"

ACTION = "canary"
MAX_INCONCLUSIVE = 5

# Phases, in the order a passing canary walks them.
START, STEP, ROLLOUT, ANALYSIS, PROMOTE, PROMOTING, ABORT, ABORTING = (
    "start",
    "step",
    "rollout",
    "analysis",
    "promote",
    "promoting",
    "abort",
    "aborting",
)
# The phases a promote or an abort by hand can interrupt.
STEERABLE_PHASES = (STEP, ROLLOUT, ANALYSIS)


def canary_steps(ctx: StepContext) -> list[int]:
    """The weights below 100 that run beside the stable version; 100 itself is the promotion."""
    return [w for w in ctx.request["strategy"]["steps"] if w < 100]


class CanaryStep:
    name = "canary"
    status_label = "canary"
    max_attempts = 3

    def __init__(
        self, gitops: Provider[GitOpsRepo], target: Provider[DeploymentTarget], application_files: ApplicationFiles
    ) -> None:
        self.gitops = gitops
        self.target = target
        self.application_files = application_files

    def run(self, ctx: StepContext) -> StepResult | NotYet:
        phase = ctx.outputs.get(PHASE) or START
        manual = ctx.outputs.get(MANUAL)
        if manual and phase in STEERABLE_PHASES:
            who = ctx.outputs.get(MANUAL_BY) or "a user"
            if manual == "promote":
                ctx.log(f"promoted by {who}: the remaining steps are skipped")
                return self._next(ctx, PROMOTE, 0.0, "promoting by hand")
            reason = f"aborted by {who}"
            ctx.log(reason)
            return self._next(ctx, ABORT, 0.0, reason, {ABORT_REASON: reason})
        handler = {
            START: self._start,
            STEP: self._commit_step,
            ROLLOUT: self._await_step,
            ANALYSIS: self._analyse,
            PROMOTE: self._promote,
            PROMOTING: self._await_final,
            ABORT: self._abort,
            ABORTING: self._await_final,
        }[phase]
        return handler(ctx)

    # ---- phases --------------------------------------------------------------------------------

    def _start(self, ctx: StepContext) -> NotYet:
        app = app_of(ctx)
        gitops = self.gitops()
        require_endpoint_of(gitops, app.model_name, app.endpoint, app.namespace)
        self._refuse_a_namesake_endpoint(gitops, app)
        stable = _stable_commit(gitops, app)
        if stable is None:
            ctx.log(
                f"nothing serves at {app.endpoint} yet: version {ctx.outputs[MODEL_VERSION]} becomes stable at once"
            )
            return self._next(ctx, PROMOTE, 0.0, "nothing to compare with: promoting", {STABLE: None})
        record = {
            "sha": stable.sha,
            "version": stable.trailers.get("Model-Version"),
            "image": stable.trailers.get("Image"),
            "run_id": stable.trailers.get("Run-Id"),
        }
        # Refused now rather than at the first commit: an autoscaled stable version has no replica
        # count to set a ratio against.
        self._canary_files(ctx, app, record, canary_steps(ctx)[0])
        ctx.log(f"stable version {record['version']} at {stable.sha[:12]}; steps {ctx.request['strategy']['steps']}")
        return self._next(ctx, STEP, 0.0, "starting the canary", {STABLE: record, STEP_INDEX: 0, EVIDENCE: []})

    def _commit_step(self, ctx: StepContext) -> NotYet:
        app = app_of(ctx)
        index = int(ctx.outputs[STEP_INDEX])
        steps = canary_steps(ctx)
        weight = steps[index]
        label = f"{index + 1}/{len(steps)}"
        stable = ctx.outputs[STABLE]
        files, split = self._canary_files(ctx, app, stable, weight)
        version = ctx.outputs[MODEL_VERSION]
        body = [
            f"Run {app.model_name} version {version} beside version {stable['version']}{app.at_endpoint}, "
            f"step {label}: {split}.",
        ]
        evidence = ctx.outputs.get(EVIDENCE) or []
        if evidence:
            body.append(f"The analysis of the step before passed: {evidence[-1]['summary']}.")
        sha = self._commit_once(
            ctx,
            app,
            files,
            phase_label=label,
            subject=f"canary {app.model_name} v{version} at {weight}%{app.at_endpoint} (step {label})",
            body="\n\n".join(body),
            trailers={
                "Model-Version": str(stable["version"]),
                "Run-Id": stable.get("run_id") or "",
                "Image": stable.get("image") or "",
                "Canary-Version": str(version),
                "Canary-Image": ctx.outputs[IMAGE_URI],
                "Canary-Run-Id": ctx.outputs[RUN_ID],
                "Canary-Weight": str(weight),
                "Action": ACTION,
            },
        )
        self.target().sync(app, sha, ctx.log)
        ctx.log(f"step {label}: {split}; synced {sha[:12]}")
        return self._next(ctx, ROLLOUT, FIRST_LOOK_SECONDS, f"step {label}: rolling out {weight}%", {SPLIT: split})

    def _await_step(self, ctx: StepContext) -> NotYet:
        app = app_of(ctx)
        answer = self._look(ctx, app)
        if isinstance(answer, NotYet):
            return answer
        if isinstance(answer, TimedOut):
            return self._next(ctx, ABORT, 0.0, "aborting", {ABORT_REASON: self._timeout_reason(ctx, answer)})
        baseline = Counts.from_texts(self._canary_metrics(app))
        interval = float(ctx.request["strategy"]["interval_seconds"])
        label = self._label(ctx)
        ctx.log(f"step {label} ready; analysing the canary's metrics for {interval:g} s")
        return self._next(
            ctx,
            ANALYSIS,
            interval,
            f"step {label}: analysing, {interval:g} s",
            {
                BASELINE: baseline.to_json(),
                INTERVAL_ENDS: time.time() + interval,
                INCONCLUSIVE: 0,
                # The endpoint's address, for clients following the release.
                DEPLOYMENT_URL: answer.outputs.get(DEPLOYMENT_URL),
                EXTERNAL_IP: answer.outputs.get(EXTERNAL_IP),
            },
        )

    def _analyse(self, ctx: StepContext) -> NotYet:
        app = app_of(ctx)
        label = self._label(ctx)
        remaining = float(ctx.outputs[INTERVAL_ENDS]) - time.time()
        if remaining > 0:
            return NotYet(min(remaining, 5.0), f"step {label}: analysing, {remaining:.0f} s left")
        window = Counts.from_texts(self._canary_metrics(app)).since(Counts.from_json(ctx.outputs[BASELINE]))
        verdict = judge(window, ctx.request["strategy"].get("analysis") or {})
        ctx.log(f"step {label} analysis: {verdict.outcome}: {verdict.summary()}")
        evidence = [*(ctx.outputs.get(EVIDENCE) or []), _evidence(ctx, verdict)]
        if verdict.outcome == "fail":
            reason = f"analysis of step {label} failed: {'; '.join(verdict.reasons)}"
            return self._next(ctx, ABORT, 0.0, reason, {EVIDENCE: evidence, ABORT_REASON: reason})
        if verdict.outcome == "inconclusive":
            waited = int(ctx.outputs.get(INCONCLUSIVE) or 0) + 1
            if waited > MAX_INCONCLUSIVE:
                reason = f"analysis of step {label} inconclusive after {waited} intervals: {verdict.reasons[0]}"
                return self._next(ctx, ABORT, 0.0, reason, {EVIDENCE: evidence, ABORT_REASON: reason})
            interval = float(ctx.request["strategy"]["interval_seconds"])
            # The window grows: the baseline stays, the interval is extended.
            return self._next(
                ctx,
                ANALYSIS,
                interval,
                f"step {label}: {verdict.reasons[0]}; waiting another {interval:g} s",
                {INCONCLUSIVE: waited, INTERVAL_ENDS: time.time() + interval},
            )
        index = int(ctx.outputs[STEP_INDEX]) + 1
        if index < len(canary_steps(ctx)):
            return self._next(ctx, STEP, 0.0, f"step {label} passed", {EVIDENCE: evidence, STEP_INDEX: index})
        return self._next(ctx, PROMOTE, 0.0, f"step {label} passed: promoting", {EVIDENCE: evidence})

    def _promote(self, ctx: StepContext) -> NotYet:
        app = app_of(ctx)
        files = render_files(ctx, app, self.application_files)
        version = ctx.outputs[MODEL_VERSION]
        evidence = ctx.outputs.get(EVIDENCE) or []
        passed = "; ".join(f"step {e['step']} at {e['weight']}%: {e['summary']}" for e in evidence)
        by_hand = ctx.outputs.get(MANUAL) == "promote"
        reason = f"promoted by {ctx.outputs.get(MANUAL_BY)}" if by_hand else "every step passed its analysis"
        stable = ctx.outputs.get(STABLE)
        replaced = f", replacing version {stable['version']}" if stable else ""
        sha = self._commit_once(
            ctx,
            app,
            files,
            phase_label="promote",
            subject=f"promote {app.model_name} v{version}{app.at_endpoint}",
            body=f"Serve version {version} as the stable version{replaced}: {reason}."
            + (f"\n\nAnalysis: {passed}." if passed else ""),
            trailers={
                "Model-Version": str(version),
                "Run-Id": ctx.outputs[RUN_ID],
                "Image": ctx.outputs[IMAGE_URI],
                "Action": "promote",
            },
        )
        self.target().sync(app, sha, ctx.log)
        ctx.log(f"promoted version {version} at {sha[:12]}")
        return self._next(ctx, PROMOTING, FIRST_LOOK_SECONDS, f"promoting v{version}")

    def _abort(self, ctx: StepContext) -> NotYet:
        app = app_of(ctx)
        stable = ctx.outputs[STABLE]
        reason = str(ctx.outputs.get(ABORT_REASON) or "aborted")
        files = self.gitops().read_files(stable["sha"], app.path)
        evidence = ctx.outputs.get(EVIDENCE) or []
        body = [
            f"Restore {app.path} as of {stable['sha'][:12]}: version {stable['version']} serves alone again.",
            f"Reason: {reason}.",
        ]
        if evidence:
            latest = evidence[-1]
            body.append(
                f"Evidence (step {latest['step']} at {latest['weight']}%): {latest['summary']}; thresholds: "
                + ", ".join(f"{k}={v}" for k, v in latest["thresholds"].items())
                + "."
            )
        sha = self._commit_once(
            ctx,
            app,
            files,
            phase_label="abort",
            subject=f"abort canary {app.model_name} v{ctx.outputs[MODEL_VERSION]}{app.at_endpoint}",
            body="\n\n".join(body),
            trailers={
                "Model-Version": str(stable["version"]),
                "Run-Id": stable.get("run_id") or "",
                "Image": stable.get("image") or "",
                "Canary-Version": str(ctx.outputs[MODEL_VERSION]),
                "Action": "rollback",
                "Reverts-To": stable["sha"],
            },
        )
        self.target().sync(app, sha, ctx.log)
        ctx.log(f"aborted: {reason}; restored version {stable['version']} at {sha[:12]}")
        return self._next(ctx, ABORTING, FIRST_LOOK_SECONDS, f"aborting: {reason}")

    def _await_final(self, ctx: StepContext) -> StepResult | NotYet:
        app = app_of(ctx)
        answer = self._look(ctx, app)
        if isinstance(answer, NotYet):
            return answer
        if isinstance(answer, TimedOut):
            raise DeploymentTimedOut(self._timeout_reason(ctx, answer), details=answer.details)
        aborted = ctx.outputs[PHASE] == ABORTING
        outputs = {
            **answer.outputs,
            COMMIT: ctx.outputs[PHASE_COMMIT],
            COMMIT_CHANGED: True,
            SYNCED_REVISION: ctx.outputs[PHASE_COMMIT],
            GITOPS_PATH: app.path,
            APPLICATION: app.application,
            TARGET: ctx.settings.target.kind,
            OUTCOME: "aborted" if aborted else "promoted",
        }
        if aborted:
            outputs[FINAL_STATUS] = "rolled_back"
            reason = ctx.outputs.get(ABORT_REASON)
            return StepResult(outputs, f"rolled back to v{ctx.outputs[STABLE]['version']}: {reason}")
        return StepResult(
            outputs, f"v{ctx.outputs[MODEL_VERSION]} promoted, serving at {answer.outputs[DEPLOYMENT_URL]}"
        )

    def discard(self, ctx: StepContext) -> None:
        """A cancelled canary leaves the endpoint as it was before it: when a commit of it is on the
        branch, one commit restores the stable commit's files (or removes the endpoint, when nothing
        served there before), and the target is synced to it. Safe to run again: a restore this
        clean-up already pushed is found by its trailer and synced again."""
        from control_api.pipeline.steps.commit import CANCELS_TRAILER, cancelled_by

        gitops = self.gitops()
        app = app_of(ctx)
        earlier = gitops.find_by_trailer(CANCELS_TRAILER, ctx.deployment_id)
        if earlier is None:
            mine = gitops.find_by_trailer("Deployment-Id", ctx.deployment_id)
            if mine is None:
                return  # the canary had committed nothing
            stable = ctx.outputs.get(STABLE)
            who = cancelled_by(ctx)
            trailers = {**app.trailers(), CANCELS_TRAILER: ctx.deployment_id, "Requested-By": who}
            version = ctx.outputs.get(MODEL_VERSION)
            if stable:
                files = gitops.read_files(stable["sha"], app.path)
                request = CommitRequest(
                    files=files,
                    replace_dirs=(app.path,),
                    delete_paths=(),
                    subject=f"cancel canary {app.model_name} v{version}{app.at_endpoint}",
                    body=f"Restore {app.path} as of {stable['sha'][:12]}: deployment {ctx.deployment_id} was "
                    f"cancelled by {who}.",
                    trailers={
                        **trailers,
                        "Model-Version": str(stable["version"]),
                        "Run-Id": stable.get("run_id") or "",
                        "Image": stable.get("image") or "",
                        "Action": "rollback",
                        "Reverts-To": stable["sha"],
                    },
                )
            else:
                from renderer import application_file

                request = CommitRequest(
                    files={},
                    replace_dirs=(),
                    delete_paths=(app.path, application_file(app.application)),
                    subject=f"cancel canary {app.model_name} v{version}{app.at_endpoint}",
                    body=f"Remove {app.path}: nothing served there before deployment {ctx.deployment_id}, "
                    f"which {who} cancelled.",
                    trailers={**trailers, "Action": "undeploy"},
                )
            sha = gitops.commit(request).sha
            ctx.log(f"{request.subject} at {sha[:12]}")
            action = request.trailers["Action"]
        else:
            sha, action = earlier.sha, earlier.trailers.get("Action", "")
        target = self.target()
        if action == "undeploy":
            target.remove(app, sha, ctx.log)
        else:
            target.sync(app, sha, ctx.log)

    # ---- helpers -------------------------------------------------------------------------------

    def _next(
        self, ctx: StepContext, phase: str, after: float, message: str, outputs: dict[str, Any] | None = None
    ) -> NotYet:
        """Move to ``phase`` and be looked at again in ``after`` seconds. A new phase starts its own
        wait clock (the ``poll_*`` values)."""
        progress = {
            PHASE: phase,
            POLL_DEADLINE: None,
            POLL_DELAY: None,
            POLL_STATE: None,
            POLL_REASON: None,
            **(outputs or {}),
        }
        return NotYet(retry_after=after, message=message, progress=progress)

    def _label(self, ctx: StepContext) -> str:
        return f"{int(ctx.outputs[STEP_INDEX]) + 1}/{len(canary_steps(ctx))}"

    def _look(self, ctx: StepContext, app: AppRef) -> Ready | NotYet | TimedOut:
        """One look at the rollout of the phase's commit."""
        return look_until_ready(ctx, self.target(), app, ctx.outputs[PHASE_COMMIT], ctx.outputs[PHASE])

    def _timeout_reason(self, ctx: StepContext, timed_out: TimedOut) -> str:
        timeout = ctx.settings.target.ready_timeout_seconds
        return f"{ctx.outputs[PHASE]}: not ready after {timeout:.0f} s ({timed_out.reason})"

    @staticmethod
    def _refuse_a_namesake_endpoint(gitops: GitOpsRepo, app: AppRef) -> None:
        """The canary Deployment is called ``<endpoint>-canary``: an endpoint of that name in the
        namespace would be the same Deployment and Service name on the cluster."""
        from renderer import canary_name
        from renderer.names import APPS_DIR

        namesake = canary_name(app.endpoint)
        if namesake in gitops.folders(gitops.branch, f"{APPS_DIR}/{app.namespace}"):
            raise InvalidRequestError(
                f"endpoint {namesake!r} exists in {app.namespace!r}, and a canary of {app.endpoint!r} would "
                "run under that name; undeploy it or release without a canary",
                code="canary_not_possible",
                details={"field": "strategy", "endpoint": namesake},
            )

    def _canary_metrics(self, app: AppRef) -> list[str]:
        from renderer import canary_name

        return self.target().replica_metrics(app, canary_name(app.endpoint))

    def _canary_files(
        self, ctx: StepContext, app: AppRef, stable: dict[str, Any], weight: int
    ) -> tuple[dict[str, bytes], str]:
        from renderer import RenderError, render_base, render_canary, render_canary_base

        spec = spec_of(ctx, app)
        try:
            stable_files = self.gitops().read_files(stable["sha"], app.path)
            files, split = render_canary(stable_files, spec, weight)
        except RenderError as exc:
            raise InvalidRequestError(
                f"cannot render the canary: {exc.message}", code="canary_not_possible", details={"field": exc.field}
            ) from exc
        return {**render_base(), **render_canary_base(), **files, **self.application_files(app)}, split.describe()

    def _commit_once(
        self,
        ctx: StepContext,
        app: AppRef,
        files: dict[str, bytes],
        *,
        phase_label: str,
        subject: str,
        body: str,
        trailers: dict[str, str],
    ) -> str:
        """Commit the phase's files, or find the commit an interrupted attempt of this phase pushed."""
        gitops = self.gitops()
        newest = gitops.history(path_prefix=app.path, limit=1)
        if (
            newest
            and newest[0].trailers.get("Deployment-Id") == ctx.deployment_id
            and newest[0].trailers.get("Canary-Step") == phase_label
        ):
            sha = newest[0].sha
        else:
            result = gitops.commit(
                CommitRequest(
                    files=files,
                    replace_dirs=(app.path,),
                    delete_paths=(),
                    subject=subject,
                    body=body,
                    trailers={
                        **app.trailers(),
                        **trailers,
                        "Canary-Step": phase_label,
                        "Deployment-Id": ctx.deployment_id,
                        "Requested-By": ctx.deployment.requested_by,
                    },
                )
            )
            sha = result.sha
            ctx.log(f"commit {sha[:12]} on {result.branch}: {subject}")
        ctx.save_progress(**{PHASE_COMMIT: sha})
        return sha


def _stable_commit(gitops: GitOpsRepo, app: AppRef) -> CommitInfo | None:
    """The newest commit of the endpoint that is not a canary step: what serves when no canary runs.
    None when nothing does (never deployed, or undeployed)."""
    _, history = deploy_history(gitops, app.namespace, app.model_name, endpoint=app.endpoint)
    stable = next((c for c in history if c.trailers.get("Action") != ACTION), None)
    if stable is None or stable.trailers.get("Action") == "undeploy":
        return None
    return stable


def _evidence(ctx: StepContext, verdict: Verdict) -> dict[str, Any]:
    index = int(ctx.outputs[STEP_INDEX])
    steps = canary_steps(ctx)
    return {
        "step": f"{index + 1}/{len(steps)}",
        "weight": steps[index],
        "split": ctx.outputs.get(SPLIT),
        "summary": verdict.summary(),
        **verdict.evidence(),
    }
