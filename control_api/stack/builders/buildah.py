"""Image builder ``buildah``: the daemonless ``buildah`` command, which also pushes what it built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_api.stack.builders.kind import BuilderKind

if TYPE_CHECKING:
    from control_api.adapters.image_builder.base import ImageBuilder
    from control_api.adapters.registry.base import ImagePusher
    from control_api.settings import BuildSettings


def make(settings: BuildSettings) -> ImageBuilder:
    from control_api.adapters.image_builder.buildah import BuildahImageBuilder

    return BuildahImageBuilder(settings)


def make_pusher(settings: BuildSettings) -> ImagePusher:
    from control_api.adapters.registry.buildah_push import BuildahImagePusher

    return BuildahImagePusher(settings)


KIND = BuilderKind(
    name="buildah", check_name="buildah", settings_problems=lambda settings: [], make=make, make_pusher=make_pusher
)
