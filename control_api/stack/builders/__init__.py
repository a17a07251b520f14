"""The image builder kinds the service knows, by the name ``build.backend`` selects them with."""

from __future__ import annotations

from control_api.stack.builders import buildah, docker
from control_api.stack.builders.kind import BuilderKind
from control_api.stack.registry import by_name, kind_named

BUILDER_KINDS: dict[str, BuilderKind] = by_name(docker.KIND, buildah.KIND)


def builder_kind(name: str) -> BuilderKind:
    return kind_named(BUILDER_KINDS, name, "image builder kind")


__all__ = ["BUILDER_KINDS", "BuilderKind", "builder_kind"]
