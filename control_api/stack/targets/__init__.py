"""The target kinds the service knows, by the name ``target.kind`` selects them with."""

from __future__ import annotations

from control_api.stack.registry import by_name, kind_named
from control_api.stack.targets import argocd, local, none
from control_api.stack.targets.kind import Check, TargetKind

TARGET_KINDS: dict[str, TargetKind] = by_name(none.KIND, local.KIND, argocd.KIND)


def target_kind(name: str) -> TargetKind:
    return kind_named(TARGET_KINDS, name, "target kind")


__all__ = ["TARGET_KINDS", "Check", "TargetKind", "target_kind"]
