"""Whether the training sandbox can run here: skip locally, fail in CI when it cannot."""

from __future__ import annotations

from control_api.training import sandbox as sandboxing
from tests.support.availability import require


def require_sandbox() -> None:
    availability = sandboxing.probe()
    require(
        availability.available,
        f"the training sandbox ({availability.reason})",
        "run the tests as root on a machine where `unshare --pid --mount --net` works",
    )
