"""Adaptive micro-batching: concurrent small requests scored by one vectorised ``predict``.

How a batch forms. The server runs one event loop. A request that arrives while a batch is open joins
it. Otherwise, when batching is on, it opens a batch and the batch is flushed on the loop's next turn,
after every request handler that was already runnable has had the chance to join; no timer is
involved. When recent batches held several requests (the clients are concurrent), an open batch
lingers for up to ``max_wait`` for as many requests as recent batches held, then flushes. A batch
flushes at once when it reaches ``max_size`` rows.

When it turns itself off (``BATCHING=auto``):
- the model does not pay for it: at load, scoring ``max_size`` rows in one call costs nearly as much
  as scoring them one by one (no fixed per-call cost to share);
- there is no concurrency: recent batches held one request each. Requests are then scored directly
  (no future, no extra loop turn), and every ``probe_every``-th request opens a batch again to find
  out whether concurrent requests have come back (those arriving meanwhile join it).

Correctness. Results go back in each request's own rows. If the batched call raises, each request is
re-scored alone, so one bad row fails only its own request. A request cancelled while it waits (its
client went away) is left out of the batch; one cancelled during the call is simply not answered.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Predict = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class BatchSettings:
    mode: str = "auto"  # "auto", "on" or "off"
    max_size: int = 64
    max_wait: float = 0.002  # seconds a lingering batch may add to a request's latency
    probe_every: int = 32

    @classmethod
    def from_env(cls) -> BatchSettings:
        mode = os.environ.get("BATCHING", "auto").strip().lower()
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"BATCHING must be auto, on or off, not {mode!r}")
        return cls(
            mode=mode,
            max_size=max(1, int(os.environ.get("BATCH_MAX_SIZE", "64"))),
            max_wait=max(0.0, float(os.environ.get("BATCH_MAX_WAIT_MS", "2")) / 1000),
            probe_every=max(1, int(os.environ.get("BATCH_PROBE_EVERY", "32"))),
        )


class BatchObserver:
    """Where batch sizes and queue waits are reported (Prometheus in the server, lists in tests)."""

    def batch(self, rows: int, requests: int) -> None:  # pragma: no cover - interface
        pass

    def queue_wait(self, seconds: float) -> None:  # pragma: no cover - interface
        pass


@dataclass
class _Item:
    matrix: np.ndarray
    future: asyncio.Future
    queued_at: float


@dataclass
class _Batch:
    items: list[_Item] = field(default_factory=list)
    rows: int = 0
    flushed: bool = False
    timer: asyncio.TimerHandle | None = None


class MicroBatcher:
    def __init__(
        self,
        predict: Predict,
        settings: BatchSettings,
        observer: BatchObserver | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._predict = predict
        self._clock = clock
        self.settings = settings
        self._observer = observer or BatchObserver()
        self._open: _Batch | None = None
        # Requests per recent batch (exponentially weighted); starts at 1: no concurrency seen yet.
        self.recent_requests = 1.0
        self.pays = True
        self._direct_since_probe = 0

    def calibrate(self, sample_row: np.ndarray, repeats: int = 5) -> None:
        """Decide once whether one call on ``max_size`` rows is cheaper than ``max_size`` calls on one
        row by enough to be worth gathering requests for (auto mode only)."""
        if self.settings.mode != "auto" or self.settings.max_size < 2:
            return
        single = sample_row.reshape(1, -1)
        many = np.repeat(single, self.settings.max_size, axis=0)
        try:
            self._predict(single)  # first calls warm caches
            self._predict(many)
            one = self._best_time(lambda: self._predict(single), repeats)
            batch = self._best_time(lambda: self._predict(many), repeats)
        except Exception:  # a model that cannot score the sample still gets batching's chance
            return
        self.pays = batch < 0.5 * one * self.settings.max_size

    @property
    def active(self) -> bool:
        """Whether a request arriving now with no open batch would open one."""
        if self.settings.mode == "on":
            return True
        if self.settings.mode == "off" or not self.pays:
            return False
        return self.recent_requests >= 1.5

    async def predict(self, matrix: np.ndarray) -> Any:
        rows = matrix.shape[0]
        if self.settings.mode == "off" or not self.pays or rows >= self.settings.max_size:
            return self._predict(matrix)
        if self._open is None:
            if not self.active:
                self._direct_since_probe += 1
                if self._direct_since_probe < self.settings.probe_every:
                    return self._predict(matrix)
            self._direct_since_probe = 0
        loop = asyncio.get_running_loop()
        batch = self._open
        if batch is not None and batch.rows + rows > self.settings.max_size:
            self._flush(batch)
            batch = None
        if batch is None:
            batch = self._open = _Batch()
            loop.call_soon(self._after_first_turn, batch)
        item = _Item(matrix, loop.create_future(), self._clock())
        batch.items.append(item)
        batch.rows += rows
        if batch.rows >= self.settings.max_size or (batch.timer is not None and self._enough(batch)):
            self._flush(batch)
        return await item.future

    def _enough(self, batch: _Batch) -> bool:
        return len(batch.items) >= min(round(self.recent_requests), self.settings.max_size)

    def _after_first_turn(self, batch: _Batch) -> None:
        if batch.flushed:
            return
        if self.settings.max_wait > 0 and self.recent_requests >= 1.5 and not self._enough(batch):
            batch.timer = asyncio.get_running_loop().call_later(self.settings.max_wait, self._flush, batch)
            return
        self._flush(batch)

    def _flush(self, batch: _Batch) -> None:
        if batch.flushed:
            return
        batch.flushed = True
        if batch.timer is not None:
            batch.timer.cancel()
        if self._open is batch:
            self._open = None
        items = [item for item in batch.items if not item.future.done()]  # cancelled ones are done
        self.recent_requests = 0.7 * self.recent_requests + 0.3 * max(1, len(items))
        if not items:
            return
        started = self._clock()
        for item in items:
            self._observer.queue_wait(started - item.queued_at)
        self._observer.batch(sum(item.matrix.shape[0] for item in items), len(items))
        if len(items) == 1:
            self._run_alone(items[0])
            return
        try:
            results = self._predict(np.concatenate([item.matrix for item in items]))
        except Exception:  # one bad request must not fail the others: score each on its own
            for item in items:
                self._run_alone(item)
            return
        offset = 0
        for item in items:
            count = item.matrix.shape[0]
            if not item.future.done():
                item.future.set_result(results[offset : offset + count])
            offset += count

    def _run_alone(self, item: _Item) -> None:
        try:
            result = self._predict(item.matrix)
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(result)

    def _best_time(self, call: Callable[[], Any], repeats: int) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = self._clock()
            call()
            best = min(best, self._clock() - started)
        return best
