"""Kubernetes resource quantities as Docker limits."""

from __future__ import annotations

_CPU_SUFFIX_MILLI = "m"
_MEMORY_FACTORS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def nano_cpus(quantity: str | None) -> int | None:
    if not quantity:
        return None
    if quantity.endswith(_CPU_SUFFIX_MILLI):
        return int(quantity[:-1]) * 10**6
    return int(float(quantity) * 10**9)


def memory_bytes(quantity: str | None) -> int | None:
    if not quantity:
        return None
    digits = quantity.rstrip("kKMGTi")
    suffix = quantity[len(digits) :]
    return int(float(digits) * _MEMORY_FACTORS[suffix])
