"""What the runtime reads from rendered manifests: security context, volumes, probe, ports."""

from __future__ import annotations

import copy

import pytest

from control_api.adapters.local_runtime.base import ScratchVolume, SecurityContext
from control_api.adapters.local_runtime.manifests import pair_workloads
from control_api.errors import SyncFailed
from tests.support.local_runtime import base_manifest_spec


def test_the_base_manifest_gives_its_security_context_volumes_and_probe():
    spec = base_manifest_spec("team-a")

    assert spec.security == SecurityContext(
        run_as_user=10001,
        run_as_group=10001,
        run_as_non_root=True,
        supplemental_groups=(10001,),
        read_only_root_filesystem=True,
        capabilities_drop=("ALL",),
        capabilities_add=(),
        allow_privilege_escalation=False,
    )
    assert spec.scratch_volumes == (ScratchVolume("/tmp", "1Gi"),)
    assert (spec.container_port, spec.service_port) == (8080, 80)
    assert (spec.readiness_path, spec.readiness_port, spec.readiness_failure_threshold) == ("/ready", 8080, 3)


def deployment(pod_security: dict, container_security: dict, volumes: list, mounts: list) -> dict:
    return {
        "kind": "Deployment",
        "metadata": {"name": "m"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "m"}},
                "spec": {
                    "securityContext": pod_security,
                    "volumes": volumes,
                    "containers": [
                        {"name": "c", "image": "img", "securityContext": container_security, "volumeMounts": mounts}
                    ],
                },
            }
        },
    }


def test_the_containers_security_context_wins_over_the_pods():
    [workload] = pair_workloads(
        [
            deployment(
                {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True, "supplementalGroups": [5, 6]},
                {"runAsUser": 2000, "capabilities": {"drop": ["ALL"], "add": ["NET_RAW"]}},
                [],
                [],
            )
        ],
        "ns",
    )

    assert workload.spec.security == SecurityContext(
        run_as_user=2000,
        run_as_group=1000,
        run_as_non_root=True,
        supplemental_groups=(5, 6),
        capabilities_drop=("ALL",),
        capabilities_add=("NET_RAW",),
    )


def test_nothing_said_means_kubernetes_defaults():
    [workload] = pair_workloads([deployment({}, {}, [], [])], "ns")

    assert workload.spec.security == SecurityContext()
    assert workload.spec.security.allow_privilege_escalation and not workload.spec.security.read_only_root_filesystem


@pytest.mark.parametrize(
    "volume",
    [
        {"name": "data", "persistentVolumeClaim": {"claimName": "x"}},
        {"name": "data", "hostPath": {"path": "/etc"}},
        None,
    ],
)
def test_a_volume_other_than_emptydir_is_refused(volume):
    volumes = [volume] if volume else []
    manifest = deployment({}, {}, volumes, [{"name": "data", "mountPath": "/data"}])

    with pytest.raises(
        SyncFailed, match=r"ns/m: volume 'data' .* mounted at /data cannot be provided by the local target"
    ):
        pair_workloads([copy.deepcopy(manifest)], "ns")
