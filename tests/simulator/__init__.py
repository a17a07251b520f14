"""Argo CD + Kubernetes API simulator for tests.

Usage::

    checker = ContractChecker(contracts_dir)
    simulator = ArgoCDSimulator(runtime, work_dir=tmp_path)      # any LocalRuntime
    with SimulatorServer(simulator, checker) as server:
        ArgoCDSettings(server_url=server.url, token="sim-argocd-token")
        KubernetesSettings(api_url=server.url, token="sim-kubernetes-token")
        ...
    assert checker.violations == []

Faults: ``simulator.set_faults(sync_error=..., degraded=..., no_ip=True, hostname=True,
unauthorized=True, flaky_5xx=True)`` or ``POST /_sim/faults`` with the same JSON keys.
"""

from tests.simulator.contracts import ContractChecker, ContractViolation, Violation
from tests.simulator.engine import ArgoCDSimulator, Faults, SimError
from tests.simulator.fake_runtime import InMemoryRuntime
from tests.simulator.runner import SimulatorServer

__all__ = [
    "ArgoCDSimulator",
    "ContractChecker",
    "ContractViolation",
    "Faults",
    "InMemoryRuntime",
    "SimError",
    "SimulatorServer",
    "Violation",
]
