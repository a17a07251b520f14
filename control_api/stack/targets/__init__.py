"""The target kinds the service knows, by the name ``target.kind`` selects them with."""

from __future__ import annotations

from control_api.stack.targets import argocd, local, none
from control_api.stack.targets.kind import Check, TargetKind

TARGET_KINDS: dict[str, TargetKind] = {
    none.KIND.name: none.KIND,
    local.KIND.name: local.KIND,
    argocd.KIND.name: argocd.KIND,
}


def target_kind(name: str) -> TargetKind:
    try:
        return TARGET_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown target kind {name!r}; known: {', '.join(sorted(TARGET_KINDS))}") from None


__all__ = ["TARGET_KINDS", "Check", "TargetKind", "target_kind"]
