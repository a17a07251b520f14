"""Kubernetes resource quantities as Docker limits, parsed by the renderer's quantity parser."""

from __future__ import annotations

from renderer import quantities

NANO_CPUS_PER_MILLICORE = 10**6


def nano_cpus(quantity: str | None) -> int | None:
    """``"500m"`` -> 500000000 (Docker's NanoCpus); None when no limit is set."""
    if not quantity:
        return None
    return quantities.cpu_millicores(quantity) * NANO_CPUS_PER_MILLICORE


def memory_bytes(quantity: str | None) -> int | None:
    """``"512Mi"`` -> 536870912; None when no limit is set."""
    if not quantity:
        return None
    return quantities.memory_bytes(quantity)
