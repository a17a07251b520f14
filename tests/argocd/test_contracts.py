"""The contract validator itself: it must reject what Argo CD or Kubernetes would not accept."""

from __future__ import annotations

import httpx
import pytest

from tests.simulator.contracts import ContractChecker, ContractViolation, kubernetes_errors


def test_malformed_sync_request_is_a_500_and_a_recorded_violation(sim_server, checker):
    headers = {"Authorization": "Bearer sim-argocd-token"}
    # "prune" must be a boolean and "revison" is not a field: both are caught.
    body = {"name": "iris", "revison": "abc", "prune": "yes"}

    response = httpx.post(f"{sim_server.url}/api/v1/applications/iris/sync", json=body, headers=headers)

    assert response.status_code == 500
    assert "contract violation" in response.json()["message"]
    assert len(checker.violations) == 1
    violation = checker.violations[0]
    assert violation.schema == "applicationApplicationSyncRequest"
    assert "'yes' is not of type 'boolean'" in violation.message
    assert "revison" in violation.message
    checker.violations.clear()  # expected here; the fixture asserts none are left


def test_application_missing_required_crd_fields_is_rejected(sim_server, checker):
    headers = {"Authorization": "Bearer sim-argocd-token"}
    body = {"metadata": {"name": "iris"}, "spec": {"source": {"path": "apps/iris"}}}

    response = httpx.post(f"{sim_server.url}/api/v1/applications", json=body, headers=headers)

    assert response.status_code == 500
    assert [v.schema for v in checker.violations] == ["Application CRD"]
    assert "'destination' is a required property" in checker.violations[0].message
    checker.violations.clear()


def test_swagger_refs_are_resolved_in_nested_definitions(checker):
    errors = checker.swagger.errors("v1alpha1Application", {"status": {"history": [{"id": "one"}]}})

    assert errors == ["status/history/0/id: 'one' is not of type 'integer'"]


def test_well_formed_bodies_pass(checker):
    checker.argocd("test", "applicationApplicationRollbackRequest", {"name": "iris", "id": 3}, request=True)
    checker.argocd("test", "sessionSessionCreateRequest", {"username": "a", "password": "b"}, request=True)
    assert checker.violations == []


def test_rollback_request_with_string_id_violates(checker):
    with pytest.raises(ContractViolation):
        checker.argocd("test", "applicationApplicationRollbackRequest", {"id": "latest"}, request=True)
    checker.violations.clear()


def test_kubernetes_schemas_reject_a_bad_service():
    good = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": 80}]}}
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": "80x"}]}}

    assert kubernetes_errors(good) == []
    assert kubernetes_errors(bad) == ["spec/ports/0/port: '80x' is not of type 'integer'"]


def test_unknown_fault_switch_is_refused(sim_server):
    response = httpx.post(f"{sim_server.url}/_sim/argocd/faults", json={"sync_eror": "typo"})
    assert response.status_code == 400


def test_faults_can_be_set_over_http(sim_server, simulator):
    response = httpx.post(f"{sim_server.url}/_sim/argocd/faults", json={"missing_project": True})
    assert response.status_code == 200
    assert simulator.argocd.faults.missing_project is True
    httpx.delete(f"{sim_server.url}/_sim/argocd/faults")
    assert simulator.argocd.faults.missing_project is False


def test_contract_checker_needs_the_contracts(tmp_path):
    with pytest.raises(FileNotFoundError):
        ContractChecker(tmp_path)
