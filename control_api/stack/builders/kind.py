"""What an image builder kind provides: its settings rules, its status check name and its constructors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from control_api.adapters.image_builder.base import ImageBuilder
    from control_api.adapters.registry.base import ImagePusher
    from control_api.settings import BuildSettings, Settings


def no_pusher(settings: BuildSettings) -> ImagePusher | None:
    """The registry pushes through the Docker Engine, where the builder left the image."""
    return None


@dataclass(frozen=True)
class BuilderKind:
    name: str
    check_name: str  # the component's name on the status page
    settings_problems: Callable[[Settings], list[str]]
    make: Callable[[BuildSettings], ImageBuilder]
    # What pushes this builder's images to the registry; None when the registry pushes them itself.
    make_pusher: Callable[[BuildSettings], ImagePusher | None] = no_pusher
