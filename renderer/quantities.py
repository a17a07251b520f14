"""Kubernetes resource quantities: the subset people write for CPU and memory, checked and halved.

Accepted CPU: ``2``, ``0.5``, ``500m``. Accepted memory: ``512Mi``, ``1Gi``, ``1G``, ``134217728``.
Exponent forms (``1e3``) are valid Kubernetes but rare and easy to get wrong, so they are refused.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_CPU = re.compile(r"^(?P<number>\d+(?:\.\d+)?|\.\d+)(?P<milli>m?)$")
_MEMORY = re.compile(r"^(?P<number>\d+(?:\.\d+)?|\.\d+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|)$")

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_MEMORY_FACTORS = {**_BINARY, **_DECIMAL, "": 1}


def cpu_millicores(quantity: str) -> int:
    """``"500m"`` -> 500, ``"1.5"`` -> 1500. Raises ValueError for anything else or below 1m."""
    match = _CPU.match(quantity)
    if not match:
        raise ValueError(f'{quantity!r} is not a CPU quantity; write cores ("1", "0.5") or millicores ("500m")')
    number = Decimal(match["number"])
    millicores = number if match["milli"] else number * 1000
    if millicores != millicores.to_integral_value():
        raise ValueError(f"{quantity!r} is finer than one millicore")
    if millicores < 1:
        raise ValueError(f"{quantity!r} must be at least 1m")
    return int(millicores)


def memory_bytes(quantity: str) -> int:
    """``"512Mi"`` -> 536870912. Raises ValueError for anything else or for zero."""
    match = _MEMORY.match(quantity)
    if not match:
        raise ValueError(
            f'{quantity!r} is not a memory quantity; write e.g. "512Mi", "1Gi" or "1G" (suffixes Ki Mi Gi Ti k M G T)'
        )
    amount = Decimal(match["number"]) * _MEMORY_FACTORS[match["suffix"]]
    if amount != amount.to_integral_value():
        raise ValueError(f"{quantity!r} is not a whole number of bytes")
    if amount < 1:
        raise ValueError(f"{quantity!r} must be more than zero")
    return int(amount)


def format_millicores(millicores: int) -> str:
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


def format_bytes(amount: int) -> str:
    """The shortest exact spelling, binary suffixes first (Kubernetes' own preference for memory)."""
    for suffixes in (_BINARY, _DECIMAL):
        for suffix, factor in sorted(suffixes.items(), key=lambda item: -item[1]):
            if amount % factor == 0:
                return f"{amount // factor}{suffix}"
    return str(amount)


def half_cpu(quantity: str) -> str:
    return format_millicores(max(1, math.ceil(cpu_millicores(quantity) / 2)))


def half_memory(quantity: str) -> str:
    return format_bytes(max(1, math.ceil(memory_bytes(quantity) / 2)))
