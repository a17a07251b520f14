"""The training backend kinds the service knows, by the name ``training.backend`` selects them with."""

from __future__ import annotations

from control_api.stack.registry import by_name, kind_named
from control_api.stack.training import kubernetes, local
from control_api.stack.training.kind import TrainingKind

TRAINING_KINDS: dict[str, TrainingKind] = by_name(local.KIND, kubernetes.KIND)


def training_kind(name: str) -> TrainingKind:
    return kind_named(TRAINING_KINDS, name, "training backend")


__all__ = ["TRAINING_KINDS", "TrainingKind", "training_kind"]
