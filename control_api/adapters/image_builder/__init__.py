"""Image builders: a Docker Engine (``docker``) or the daemonless ``buildah`` command (``buildah``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_api.settings import BuildSettings

if TYPE_CHECKING:
    from control_api.adapters.image_builder.base import ImageBuilder
    from control_api.adapters.registry.base import ImagePusher


def make_image_builder(settings: BuildSettings) -> ImageBuilder:
    if settings.backend == "buildah":
        from control_api.adapters.image_builder.buildah import BuildahImageBuilder

        return BuildahImageBuilder(settings)
    from control_api.adapters.image_builder.docker_engine import DockerImageBuilder

    return DockerImageBuilder(settings)


def make_image_pusher(settings: BuildSettings) -> ImagePusher | None:
    """What pushes the builder's images to a registry; None: the registry pushes through the Docker Engine."""
    if settings.backend == "buildah":
        from control_api.adapters.registry.buildah_push import BuildahImagePusher

        return BuildahImagePusher(settings)
    return None
