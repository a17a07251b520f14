"""The training pod's log after a restart: the backend replays it from the first line, and each line
still reaches the journal and the run's log file once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from control_api.journal.store import Journal
from control_api.pipeline.steps.train_kubernetes import PodLog


class RecordingJournal:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []

    def add_log(self, deployment_id: str, step: str, lines: list[str]) -> None:
        self.lines.extend((deployment_id, step, line) for line in lines)


def test_a_replayed_log_is_passed_on_once(tmp_path: Path) -> None:
    path = tmp_path / "work" / "d1" / "run.pod.log"
    first_journal = RecordingJournal()
    first = PodLog(cast(Journal, first_journal), "d1", "train", path)
    for line in ["epoch 1", "loss\r0.5"]:
        first(line)
    # The service stops here; a new process re-attaches and the pod's log comes again from line one.
    second_journal = RecordingJournal()
    second = PodLog(cast(Journal, second_journal), "d1", "train", path)
    for line in ["epoch 1", "loss\r0.5", "epoch 2", "done"]:
        second(line)

    assert [line for _, _, line in first_journal.lines] == ["epoch 1", "loss\r0.5"]
    assert second_journal.lines == [("d1", "train", "epoch 2"), ("d1", "train", "done")]
    assert path.read_bytes().decode().split("\n") == [
        "epoch 1",
        "loss\r0.5",
        "epoch 2",
        "done",
        "",
    ]


def test_a_first_attach_passes_every_line(tmp_path: Path) -> None:
    journal = RecordingJournal()
    sink: Any = PodLog(cast(Journal, journal), "d2", "train", tmp_path / "new.pod.log")
    sink("hello")
    assert journal.lines == [("d2", "train", "hello")]
