"""Fault switches of the simulated cluster (all off by default)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class KubeFaults:
    crash_loop: bool = False  # containers exit 1 right after start -> CrashLoopBackOff
    image_pull_failure: bool = False  # ErrImagePull, then ImagePullBackOff
    oom: bool = False  # containers exceed their memory limit -> OOMKilled, then CrashLoopBackOff
    unschedulable: bool = False  # pods stay Pending: PodScheduled=False, reason Unschedulable
    readiness_failing: bool = False  # readiness probes go to a path answering 404
    no_ip: bool = False  # LoadBalancer Services never get status.loadBalancer.ingress
    lb_hostname: bool = False  # ingress is a hostname (resolvable through /etc/hosts), not an IP
    lb_late_seconds: float = 0.0  # the ingress entry appears this long after the Service was created
    hostname_unresolvable_seconds: float = 0.0  # with lb_hostname: the /etc/hosts line comes this late
    api_unauthorized: bool = False  # the HTTP API answers 401 to everything
    api_flaky_5xx: bool = False  # the HTTP API answers 503 to every other request

    @classmethod
    def names(cls) -> set[str]:
        return {field.name for field in dataclasses.fields(cls)}

    def updated(self, **switches: object) -> KubeFaults:
        unknown = set(switches) - self.names()
        if unknown:
            raise ValueError(f"unknown fault switch(es): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **switches)
