"""The image builder kinds the service knows, by the name ``build.backend`` selects them with."""

from __future__ import annotations

from control_api.stack.builders import buildah, docker
from control_api.stack.builders.kind import BuilderKind

BUILDER_KINDS: dict[str, BuilderKind] = {
    docker.KIND.name: docker.KIND,
    buildah.KIND.name: buildah.KIND,
}


def builder_kind(name: str) -> BuilderKind:
    try:
        return BUILDER_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown image builder kind {name!r}; known: {', '.join(sorted(BUILDER_KINDS))}") from None


__all__ = ["BUILDER_KINDS", "BuilderKind", "builder_kind"]
