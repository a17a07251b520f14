"""The training backend kinds the service knows, by the name ``training.backend`` selects them with."""

from __future__ import annotations

from control_api.stack.training import kubernetes, local
from control_api.stack.training.kind import TrainingKind

TRAINING_KINDS: dict[str, TrainingKind] = {
    local.KIND.name: local.KIND,
    kubernetes.KIND.name: kubernetes.KIND,
}


def training_kind(name: str) -> TrainingKind:
    try:
        return TRAINING_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown training backend {name!r}; known: {', '.join(sorted(TRAINING_KINDS))}") from None


__all__ = ["TRAINING_KINDS", "TrainingKind", "training_kind"]
