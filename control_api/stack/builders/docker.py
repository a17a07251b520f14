"""Image builder ``docker``: the Docker Engine, through the ``docker`` SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_api.stack.builders.kind import BuilderKind

if TYPE_CHECKING:
    from control_api.adapters.image_builder.base import ImageBuilder
    from control_api.settings import BuildSettings


def make(settings: BuildSettings) -> ImageBuilder:
    from control_api.adapters.image_builder.docker_engine import DockerImageBuilder

    return DockerImageBuilder(settings)


KIND = BuilderKind(name="docker", check_name="docker", settings_problems=lambda settings: [], make=make)
