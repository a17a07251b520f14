"""What an image builder kind provides: its settings rules, its status check name and its constructor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from control_api.adapters.image_builder.base import ImageBuilder
    from control_api.settings import Settings


@dataclass(frozen=True)
class BuilderKind:
    name: str
    check_name: str  # the component's name on the status page
    settings_problems: Callable[[Settings], list[str]]
    make: Callable[[Settings], ImageBuilder]
