"""How a step or a target is handed an adapter: a zero-argument callable that returns it.

Adapters are built when first used, not when the pipelines are assembled at start-up: a service that
never builds an image never needs a Docker Engine, and a status check reports a missing system
instead of the service failing to start. A provider keeps that laziness while the step still names,
and receives, only the adapters it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

Provider = Callable[[], T]
