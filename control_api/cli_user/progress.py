"""Live deploy progress from the event stream: one line per step, a spinner while it runs, then its time.

StepBoard holds the state (fed by events, no I/O). LiveProgress draws it with rich on a terminal;
LineProgress prints one plain line per transition for logs and CI, where redrawing makes no sense.
Log lines are printed with show_logs (``--logs``), and always for the steps in ALWAYS_LOGGED: a canary
release runs for minutes and its lines (each weight, each analysis, the abort) are what the user waits for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from control_api.client import ServerSentEvent

# Steps whose log lines are printed even without show_logs.
ALWAYS_LOGGED = frozenset({"canary"})


def shows_log(step: str | None, show_logs: bool) -> bool:
    return show_logs or step in ALWAYS_LOGGED


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass
class StepState:
    name: str
    status: str = "pending"
    message: str | None = None
    started_at: datetime | None = None
    seen_running_at: float | None = None  # local monotonic clock, for the live elapsed time
    duration: float | None = None
    last_log: str | None = None


@dataclass
class StepBoard:
    steps: dict[str, StepState] = field(default_factory=dict)
    status: str = "pending"
    final_view: dict[str, Any] | None = None

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> StepBoard:
        # Only the order of steps is taken from the view: their state comes from replayed events.
        return cls(
            steps={s["name"]: StepState(s["name"]) for s in view.get("steps", [])}, status=view.get("status", "pending")
        )

    def _step(self, name: str) -> StepState:
        if name not in self.steps:
            self.steps[name] = StepState(name)
        return self.steps[name]

    def apply(self, event: ServerSentEvent) -> None:
        data = event.json() or {}
        if event.event == "step" and data.get("step"):
            step = self._step(data["step"])
            step.status = data.get("status", step.status)
            step.message = data.get("message")
            at = _parse_time(data.get("at"))
            if step.status == "running":
                step.started_at, step.seen_running_at, step.duration, step.last_log = at, time.monotonic(), None, None
            elif step.started_at and at:
                step.duration = max((at - step.started_at).total_seconds(), 0.0)
        elif event.event == "log" and data.get("step"):
            self._step(data["step"]).last_log = data.get("line")
        elif event.event == "status":
            self.status = data.get("status", self.status)
        elif event.event == "end":
            self.final_view = data
            self.status = data.get("status", self.status)
            # The view's durations are authoritative (they also cover events this client never saw).
            for view_step in data.get("steps", []):
                step = self._step(view_step["name"])
                step.status = view_step["status"]
                step.message = view_step.get("message")
                if view_step.get("duration_seconds") is not None:
                    step.duration = view_step["duration_seconds"]

    def failed_step(self) -> StepState | None:
        return next((s for s in self.steps.values() if s.status == "failed"), None)


class Progress(Protocol):
    def __enter__(self) -> Progress: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
    def update(self, event: ServerSentEvent) -> None: ...


def _seconds(value: float | None) -> str:
    return f"{value:.1f}s" if value is not None else ""


class LineProgress:
    """Plain lines, one per step transition (and per log line with show_logs, or of an ALWAYS_LOGGED step)."""

    def __init__(self, board: StepBoard, console: Console, show_logs: bool = False) -> None:
        self.board, self.console, self.show_logs = board, console, show_logs

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def update(self, event: ServerSentEvent) -> None:
        self.board.apply(event)
        data = event.json() or {}
        if event.event == "step":
            step = self.board.steps[data["step"]]
            if step.status == "running":
                attempt = data.get("attempt") or 1
                suffix = f" (attempt {attempt})" if attempt > 1 else ""
                self.console.print(f"[{step.name}] running{suffix}", markup=False, highlight=False)
            else:
                detail = f" in {_seconds(step.duration)}" if step.duration is not None else ""
                message = f": {step.message}" if step.message else ""
                self.console.print(f"[{step.name}] {step.status}{detail}{message}", markup=False, highlight=False)
        elif event.event == "log" and shows_log(data.get("step"), self.show_logs):
            self.console.print(f"  {data.get('step')} | {data.get('line', '')}", markup=False, highlight=False)
        elif event.event == "status" and data.get("status") == "awaiting_review":
            self.console.print("status: awaiting_review", markup=False, highlight=False)


class LiveProgress:
    """A redrawn table on a terminal: spinner and elapsed time for the running step, the last log line under it."""

    def __init__(self, board: StepBoard, console: Console, show_logs: bool = False) -> None:
        self.board, self.console, self.show_logs = board, console, show_logs
        self._spinners: dict[str, Spinner] = {}
        self._live = Live(get_renderable=self.render, console=console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._live.__exit__(exc_type, exc, traceback)

    def update(self, event: ServerSentEvent) -> None:
        self.board.apply(event)
        data = event.json() or {}
        if event.event == "log" and shows_log(data.get("step"), self.show_logs):
            self._live.console.print(Text(f"  {data.get('step')} | {data.get('line', '')}", style="dim"))

    def _icon(self, step: StepState) -> Spinner | Text:
        if step.status == "running":
            return self._spinners.setdefault(step.name, Spinner("dots", style="cyan"))
        return {
            "succeeded": Text("✓", style="green"),
            "failed": Text("✗", style="bold red"),
            "skipped": Text("-", style="dim"),
        }.get(step.status, Text("·", style="dim"))

    def render(self) -> Group:
        table = Table.grid(padding=(0, 1))
        table.add_column(width=2)
        table.add_column(min_width=9)
        table.add_column(justify="right", min_width=7)
        table.add_column()
        for step in self.board.steps.values():
            if step.status == "running":
                elapsed = time.monotonic() - step.seen_running_at if step.seen_running_at else None
                note = Text(step.last_log or "", style="dim", overflow="ellipsis", no_wrap=True)
                table.add_row(
                    self._icon(step), Text(step.name, style="bold"), Text(_seconds(elapsed), style="cyan"), note
                )
            else:
                style = {"failed": "red", "pending": "dim"}.get(step.status, "")
                message = Text(step.message or "", style="red" if step.status == "failed" else "dim", overflow="fold")
                table.add_row(self._icon(step), Text(step.name, style=style), Text(_seconds(step.duration)), message)
        return Group(table)


def make_progress(board: StepBoard, console: Console, show_logs: bool = False) -> Progress:
    if console.is_terminal:
        return LiveProgress(board, console, show_logs)
    return LineProgress(board, console, show_logs)
