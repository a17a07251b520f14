"""Kubernetes resource quantities to Docker limits."""

from __future__ import annotations

import pytest

from control_api.adapters.local_runtime.docker_runtime import memory_bytes, nano_cpus


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("500m", 500_000_000),
        ("100m", 100_000_000),
        ("1", 1_000_000_000),
        ("2", 2_000_000_000),
        ("0.5", 500_000_000),
        (None, None),
    ],
)
def test_cpu(quantity, expected):
    assert nano_cpus(quantity) == expected


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("1Gi", 2**30),
        ("256Mi", 256 * 2**20),
        ("64Ki", 64 * 2**10),
        ("1G", 10**9),
        ("500M", 500 * 10**6),
        ("128974848", 128974848),
        ("1.5Gi", 3 * 2**29),
        (None, None),
    ],
)
def test_memory(quantity, expected):
    assert memory_bytes(quantity) == expected
