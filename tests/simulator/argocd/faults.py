"""Argo CD fault switches, all off by default (POST/DELETE /_sim/argocd/faults)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class ArgoFaults:
    sync_error: str | None = None  # applying a Deployment fails with this message
    unauthorized: bool = False  # every API request answers 401
    flaky_5xx: bool = False  # every other API request answers 503
    stale_reconcile_seconds: float = 0.0  # the reconcile after an operation runs this much later
    sync_window: str | None = None  # "deny": a deny window (manualSync false) on every project
    missing_project: bool = False  # every AppProject is gone

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def validate(self) -> None:
        if self.sync_window not in (None, "deny"):
            raise ValueError(f"sync_window must be 'deny' or null, not {self.sync_window!r}")
        for name in ("unauthorized", "flaky_5xx", "missing_project"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a boolean")
        if not isinstance(self.stale_reconcile_seconds, (int, float)) or self.stale_reconcile_seconds < 0:
            raise ValueError("stale_reconcile_seconds must be a number >= 0")
        if self.sync_error is not None and not isinstance(self.sync_error, str):
            raise ValueError("sync_error must be a string or null")
