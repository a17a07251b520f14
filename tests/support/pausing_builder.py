"""An image builder that holds a build at a chosen moment, so a test's cancel arrives while it runs."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from control_api.adapters.image_builder.base import BuiltImage, ModelBundle
from tests.support.processes import live_children

WAIT_SECONDS = 300
MODEL_BUILD_LINE = "building model image "


class PausingBuilder:
    """The service's real builder, whose ``build`` holds one output line until the test releases it.

    By default the first line is held. With ``freeze`` set to an executable's name, the first line the
    builder's own process prints while building the model image is held, and that process is stopped
    (SIGSTOP) meanwhile: the build is then truly in progress when the cancel arrives, whatever the
    size of the pipe buffer. It is continued shortly after the release, by which time the service has
    had its chance to terminate it. Everything else (``image_id``, the layer engine the training image
    uses) goes to the real builder."""

    def __init__(self, real: Any, freeze: str | None = None) -> None:
        self.real = real
        self.freeze = freeze
        self.building = threading.Event()
        self.release = threading.Event()
        self.model_reference: str | None = None
        self.frozen: list[int] = []

    def build(self, bundle: ModelBundle, on_log: Callable[[str], None]) -> BuiltImage:
        held = False

        def sink(line: str) -> None:
            nonlocal held
            if line.startswith(MODEL_BUILD_LINE):
                self.model_reference = line.removeprefix(MODEL_BUILD_LINE).split(" ", 1)[0]
            builder_output = self.model_reference is not None and not line.startswith(MODEL_BUILD_LINE)
            if not held and (self.freeze is None or builder_output):
                held = True
                if self.freeze is not None:
                    self.frozen = live_children(self.freeze)
                    for pid in self.frozen:
                        os.kill(pid, signal.SIGSTOP)
                self.building.set()
                self.release.wait(WAIT_SECONDS)
                if self.frozen:
                    threading.Timer(0.5, self._thaw).start()
            on_log(line)

        return self.real.build(bundle, sink)

    def _thaw(self) -> None:
        for pid in self.frozen:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
