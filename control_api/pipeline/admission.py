"""Admission: what must hold before an operation on a model's endpoint is created and started.

It owns the namespace allowlist, the Idempotency-Key (one key names one deploy request), the rule of
one active operation per endpoint, which model an endpoint belongs to, and the creation and start of
the deployment record. The HTTP routes parse the request, ask admission, and shape its answer; the
journal only stores (its unique index refuses a second active operation, and admission turns that
refusal into the answer a client reads).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from control_api.errors import ConflictError, InvalidRequestError
from control_api.journal.store import ActiveOperationExists, DeploymentRecord, DeploymentStatus, Journal, StepStatus
from control_api.pipeline.orchestrator import Orchestrator
from control_api.pipeline.pipelines import (
    CANARY_DEPLOY,
    CANARY_DEPLOY_VERSION,
    DEPLOY,
    DEPLOY_VERSION,
    ROLLBACK,
    UNDEPLOY,
)
from control_api.pipeline.steps.commit import endpoint_in_use
from control_api.pipeline.steps.rollback import deploy_history, require_deployed, rollback_target
from control_api.settings import ApiSettings

if TYPE_CHECKING:
    from control_api.adapters.gitops.repo import GitOpsRepo
    from control_api.provider import Provider


def allowed_namespace(api: ApiSettings, requested: str | None) -> str:
    """The namespace a request is about (the default when it names none), if the allowlist has it."""
    namespace = requested or api.default_namespace
    if namespace not in api.allowed_namespaces:
        raise InvalidRequestError(
            f"namespace {namespace!r} is not allowed; allowed: {', '.join(api.allowed_namespaces)}",
            code="validation_error",
            details=[{"field": "namespace", "rule": "allowlist", "message": "namespace is not on the allowlist"}],
        )
    return namespace


def busy(running: DeploymentRecord) -> ConflictError:
    """The answer to an operation on an endpoint that already has one running."""
    what = f"model {running.model_name!r}"
    if running.endpoint != running.model_name:
        what = f"endpoint {running.endpoint!r} of {what}"
    return ConflictError(
        f"{what} in {running.namespace!r} is busy with {running.kind} {running.id}; "
        "wait for it to finish (GET /mlops/deployments/{id}) and try again",
        code="deploy_in_progress",
        details={"deployment_id": running.id, "status": running.status},
    )


def refuse_a_different_request(key: str, earlier: dict[str, Any], now: dict[str, Any]) -> None:
    """An Idempotency-Key names one request: the same key with another body is a client bug, and
    answering with the first deploy would hide it."""
    if _canonical(now) != _canonical(earlier):
        differing = sorted(k for k in set(now) | set(earlier) if now.get(k) != earlier.get(k))
        raise InvalidRequestError(
            f"Idempotency-Key {key!r} was used for a different request (fields differ: "
            f"{', '.join(differing) or 'body'}); use a new key for a new request",
            code="idempotency_key_conflict",
            details=[{"field": "Idempotency-Key", "rule": "same_request", "differing": differing}],
        )


def _canonical(request: dict[str, Any]) -> Any:
    return json.loads(json.dumps(request, sort_keys=True, default=str))


@dataclass(frozen=True)
class Admitted:
    record: DeploymentRecord
    replayed: bool  # an earlier deploy with the same Idempotency-Key, answered again


class Admission:
    def __init__(
        self,
        journal: Journal,
        orchestrator: Orchestrator,
        api: ApiSettings,
        target_kind: str,
        gitops: Provider[GitOpsRepo],
    ) -> None:
        self.journal = journal
        self.orchestrator = orchestrator
        self.api = api
        self.target_kind = target_kind
        self.gitops = gitops

    def namespace(self, requested: str | None) -> str:
        return allowed_namespace(self.api, requested)

    def refuse_if_busy(self, endpoint: str, namespace: str) -> None:
        """One deploy, rollback or undeploy per endpoint at a time. This look gives the early answer;
        the journal's unique index is what makes the rule hold across replicas (see ``start``)."""
        running = self.journal.active_for_endpoint(endpoint, namespace)
        if running is not None:
            raise busy(running)

    def refuse_another_models_endpoint(self, model_name: str, endpoint: str, namespace: str) -> None:
        """An endpoint serves one model until an undeploy frees it. This early answer comes from the
        journal, so that a deploy is admitted without reading git (training needs none); the commit
        step asks git itself, on the branch as it is then, which also sees commits made elsewhere."""
        holder = self.journal.endpoint_holder(endpoint, namespace)
        if holder is not None and holder.kind != UNDEPLOY and holder.model_name != model_name:
            raise endpoint_in_use(endpoint, namespace, holder.model_name)

    # ---- operations ----------------------------------------------------------------------------

    def deploy(
        self,
        *,
        model_name: str,
        namespace: str,
        request: dict[str, Any],
        requested_by: str,
        idempotency_key: str | None = None,
    ) -> Admitted:
        if idempotency_key:
            earlier = self.journal.find_by_idempotency_key(idempotency_key, requested_by)
            if earlier is not None:
                refuse_a_different_request(idempotency_key, earlier.request, request)
                return Admitted(earlier, replayed=True)
        endpoint = request.get("endpoint_name") or model_name
        self.refuse_another_models_endpoint(model_name, endpoint, namespace)
        kind = self.release_kind(request, DEPLOY, CANARY_DEPLOY)
        record = self.start(
            kind, model_name, namespace, request, requested_by, idempotency_key=idempotency_key, endpoint=endpoint
        )
        return Admitted(record, replayed=False)

    def rollback(
        self, model_name: str, namespace: str, version: str | None, requested_by: str, endpoint: str | None = None
    ) -> DeploymentRecord:
        """Checked against the branch before anything is created: the endpoint serves the model and
        has the version (or an earlier one) to go back to. The commit step checks again as the branch
        is then."""
        self.require_target()
        endpoint = endpoint or model_name
        history = self.history_if_idle(model_name, namespace, endpoint)
        rollback_target(history, model_name, namespace, version, endpoint)
        request = {"model_name": model_name, "namespace": namespace, "version": version, "endpoint_name": endpoint}
        return self.start(ROLLBACK, model_name, namespace, request, requested_by, endpoint=endpoint)

    def deploy_version(self, request: dict[str, Any], namespace: str, requested_by: str) -> DeploymentRecord:
        """Serve a registered version without training. The route has checked that the version exists;
        the resolve step reads it again when it runs."""
        self.require_target()
        model_name = request["model_name"]
        endpoint = request.get("endpoint_name") or model_name
        self.refuse_another_models_endpoint(model_name, endpoint, namespace)
        kind = self.release_kind(request, DEPLOY_VERSION, CANARY_DEPLOY_VERSION)
        return self.start(kind, model_name, namespace, request, requested_by, endpoint=endpoint)

    def release_kind(self, request: dict[str, Any], at_once: str, canary: str) -> str:
        """The pipeline of a deploy: ``at_once``, or ``canary`` when the request asks for one and the
        service can run it (a target that serves, commits straight to the branch)."""
        if not request.get("strategy"):
            return at_once
        if canary not in self.orchestrator.pipelines:
            raise ConflictError(
                f"the service runs with target {self.target_kind!r}, which serves nothing: a canary cannot run",
                code="no_target",
            )
        if self.orchestrator.settings.git.review_mode:
            raise InvalidRequestError(
                "a canary commits each step straight to the branch, and this service reviews every change "
                "in a pull request (git.review_mode); deploy without a strategy",
                code="canary_not_possible",
                details=[{"field": "strategy", "rule": "review_mode", "message": "canary needs direct commits"}],
            )
        return canary

    def steer_canary(self, deployment_id: str, action: str, requested_by: str) -> DeploymentRecord:
        """Promote (skip the remaining steps) or abort a running canary. The canary step acts on it at
        its next look, which is now; the answer shows the deployment as it is meanwhile."""
        from control_api.pipeline.steps import canary

        record = self.journal.get(deployment_id)
        step = record.step(canary.CanaryStep.name)
        if step is None:
            raise ConflictError(
                f"deployment {deployment_id} is a {record.kind}, not a canary release", code="not_a_canary"
            )
        phase = (step.outputs or {}).get(canary.PHASE)
        if record.is_final or step.status != StepStatus.RUNNING or phase not in canary.STEERABLE_PHASES:
            where = f"{record.status}" + (f", canary phase {phase}" if phase else "")
            raise ConflictError(
                f"deployment {deployment_id} cannot be {action}d now ({where}): only a canary whose steps "
                "are running can",
                code="canary_not_running",
                details={"status": record.status, "phase": phase},
            )
        self.journal.step_progress(
            deployment_id, canary.CanaryStep.name, {canary.MANUAL: action, canary.MANUAL_BY: requested_by}
        )
        self.orchestrator.look_now(deployment_id)
        return self.journal.get(deployment_id)

    def undeploy(
        self, model_name: str, namespace: str, requested_by: str, endpoint: str | None = None
    ) -> DeploymentRecord:
        self.require_target()
        endpoint = endpoint or model_name
        require_deployed(self.history_if_idle(model_name, namespace, endpoint), model_name, namespace, endpoint)
        request = {"model_name": model_name, "namespace": namespace, "endpoint_name": endpoint}
        return self.start(UNDEPLOY, model_name, namespace, request, requested_by, endpoint=endpoint)

    def retry(self, deployment_id: str) -> DeploymentRecord:
        """Resume a failed or timed-out deployment from its first unfinished step."""
        record = self.journal.get(deployment_id)
        if record.status not in (DeploymentStatus.FAILED, DeploymentStatus.TIMED_OUT):
            raise ConflictError(
                f"deployment {deployment_id} is {record.status}; only failed or timed_out deployments can be retried",
                code="not_retryable",
            )
        # The same rule as a new deploy: a newer deploy may have started since this one failed, and
        # retrying now would run both against the same GitOps path.
        self.refuse_if_busy(record.endpoint, record.namespace)
        first_unfinished = next((s.name for s in record.steps if s.status != StepStatus.SUCCEEDED), None)
        return self._translating_busy(lambda: self.orchestrator.resume(deployment_id, first_unfinished))

    def start(
        self,
        kind: str,
        model_name: str,
        namespace: str,
        request: dict[str, Any],
        requested_by: str,
        idempotency_key: str | None = None,
        endpoint: str | None = None,
    ) -> DeploymentRecord:
        """Create the deployment record and start it, if no other operation on the endpoint is active."""
        endpoint = endpoint or model_name
        self.refuse_if_busy(endpoint, namespace)
        record = self._translating_busy(
            lambda: self.journal.create(
                kind=kind,
                model_name=model_name,
                endpoint=endpoint,
                namespace=namespace,
                request=request,
                step_names=self.orchestrator.pipelines[kind].step_names,
                requested_by=requested_by,
                idempotency_key=idempotency_key,
            )
        )
        self.orchestrator.start(record.id)
        return record

    # ---- checks --------------------------------------------------------------------------------

    def require_target(self) -> None:
        """Rollback, undeploy and history need a target that serves: ``none`` only registers."""
        if ROLLBACK not in self.orchestrator.pipelines:
            raise ConflictError(
                f"the service runs with target {self.target_kind!r}: nothing is deployed, "
                "so nothing can be rolled back or removed",
                code="no_target",
            )

    def history_if_idle(self, model_name: str, namespace: str, endpoint: str) -> list[Any]:
        """The endpoint's deploy history, read only when no operation on it runs (else the busy answer)."""
        self.refuse_if_busy(endpoint, namespace)
        _, history = deploy_history(self.gitops(), namespace, model_name, endpoint=endpoint)
        return history

    @staticmethod
    def _translating_busy(operation: Callable[[], DeploymentRecord]) -> DeploymentRecord:
        try:
            return operation()
        except ActiveOperationExists as refused:
            raise busy(refused.running) from None
