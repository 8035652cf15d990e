"""Batch scheduler: gather frames across cameras into inference calls, run by one or more workers.

Every worker owns a detector (its own ONNX Runtime session and input buffer). The workers take turns
collecting a batch: one waits for frames while the others run inference, so `notify` from a camera's
slot always reaches the one thread that waits. Results are handed on (tracking, publishing) strictly in
the order the batches were taken, one batch at a time, so a camera's tracker never receives an older frame
after a newer one and the later stages need no locks of their own.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from edge.ingest.slot import FramePacket, LatestFrameSlot
from edge.runtime.detector import Detections

log = logging.getLogger(__name__)

# How often an idle scheduler wakes to check for stop.
IDLE_POLL_S = 0.25
ERROR_LOG_EVERY = 100


class BatchDetector(Protocol):
    def detect(self, frames_bgr: list[np.ndarray]) -> list[Detections]: ...


# Receives every frame of one inference call with its detections, in the same order.
BatchHandler = Callable[[list[FramePacket], list[Detections]], None]


@dataclass
class SchedulerCounters:
    batches: int = 0
    frames: int = 0
    errors: int = 0
    inference_s: float = 0.0  # summed over workers, so it can exceed wall time when workers overlap

    def snapshot(self) -> dict:
        mean_batch = self.frames / self.batches if self.batches else 0.0
        mean_ms = 1000 * self.inference_s / self.batches if self.batches else 0.0
        return {"batches": self.batches, "frames": self.frames, "errors": self.errors,
                "mean_batch_size": round(mean_batch, 2), "mean_batch_ms": round(mean_ms, 2)}


class BatchScheduler:
    """Takes the newest frame of each camera, up to `batch_size` per call, serving cameras in rotation.

    One worker thread per detector in `detectors`. Under overload a camera's slot keeps only its newest
    frame and counts the replaced one as dropped, so the wait of a frame is bounded by a few batch times
    and no queue grows.
    """

    def __init__(self, name: str, detectors: Sequence[BatchDetector], batch_size: int, max_wait_ms: float,
                 on_batch: BatchHandler, stop: threading.Event):
        if not detectors:
            raise ValueError(f"pipeline '{name}': a scheduler needs at least one detector, received none")
        self.pipeline_name = name
        self.detectors = list(detectors)
        self.batch_size = batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.on_batch = on_batch
        self.stop_event = stop
        self.ready = threading.Condition()
        self.slots: list[LatestFrameSlot] = []
        self.counters = SchedulerCounters()
        self.last_batch_monotonic = time.monotonic()
        self._next_slot = 0
        self._collect_lock = threading.Lock()
        # Tickets number the batches in the order they were taken. `_handed_on` is the next ticket due.
        self._order = threading.Condition()
        self._tickets_issued = 0
        self._handed_on = 0
        self.workers = [
            threading.Thread(target=self._work, args=(detector,), name=f"inference-{name}-{index}", daemon=True)
            for index, detector in enumerate(self.detectors)
        ]

    def add_slot(self, camera_id: str) -> LatestFrameSlot:
        return self.attach_slot(LatestFrameSlot(camera_id, self.ready))

    def attach_slot(self, slot: LatestFrameSlot) -> LatestFrameSlot:
        """Serve a slot made elsewhere, which must notify `self.ready` when it receives a frame."""
        self.slots.append(slot)
        return slot

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for every worker, for at most `timeout_s` in total."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for worker in self.workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def is_alive(self) -> bool:
        return any(worker.is_alive() for worker in self.workers)

    def is_processing(self, stall_s: float) -> bool:
        """True unless a worker died or frames have waited while no batch finished for `stall_s`.

        An idle scheduler (no camera delivers frames) counts as processing, so a quiet site is not restarted.
        """
        if not all(worker.is_alive() for worker in self.workers):
            return False
        waiting = any(slot.has_frame for slot in self.slots)
        return not waiting or time.monotonic() - self.last_batch_monotonic < stall_s

    def _work(self, detector: BatchDetector) -> None:
        while not self.stop_event.is_set():
            with self._collect_lock:
                batch = self._collect_batch()
                if not batch:
                    continue
                ticket = self._tickets_issued
                self._tickets_issued += 1
            self._infer(detector, batch, ticket)

    def _ready_count(self) -> int:
        return sum(slot.has_frame for slot in self.slots)

    def _collect_batch(self) -> list[FramePacket]:
        with self.ready:
            # A timed wait, not a poll: a site whose cameras are all idle or dead wakes 4 times a second.
            self.ready.wait_for(lambda: self._ready_count() > 0 or self.stop_event.is_set(), IDLE_POLL_S)
            if self.stop_event.is_set() or self._ready_count() == 0:
                return []
            deadline = time.monotonic() + self.max_wait_s
            target = min(self.batch_size, len(self.slots))
            while self._ready_count() < target and not self.stop_event.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.ready.wait(remaining)
            return self._take_in_rotation()

    def _take_in_rotation(self) -> list[FramePacket]:
        """Take up to batch_size frames, starting after the last camera served, so no camera is starved."""
        batch: list[FramePacket] = []
        count = len(self.slots)
        for offset in range(count):
            index = (self._next_slot + offset) % count
            packet = self.slots[index].take()
            if packet is None:
                continue
            batch.append(packet)
            if len(batch) == self.batch_size:
                self._next_slot = (index + 1) % count
                break
        return batch

    def _infer(self, detector: BatchDetector, batch: list[FramePacket], ticket: int) -> None:
        started = time.perf_counter()
        results: list[Detections] | None = None
        failure: Exception | None = None
        try:
            results = detector.detect([packet.frame_bgr for packet in batch])
        except Exception as error:  # noqa: BLE001 - one bad batch must not stop detection for every camera.
            failure = error
        elapsed_s = time.perf_counter() - started
        with self._order:
            # Batches taken earlier go first. Every path below advances the ticket, so no worker waits forever.
            self._order.wait_for(lambda: self._handed_on == ticket)
            try:
                if results is None:
                    self._log_failure("inference", batch, failure)
                    return
                self._hand_on(batch, results, elapsed_s)
            finally:
                self._handed_on += 1
                self._order.notify_all()

    def _hand_on(self, batch: list[FramePacket], results: list[Detections], inference_s: float) -> None:
        counters = self.counters
        counters.inference_s += inference_s
        counters.batches += 1
        counters.frames += len(batch)
        self.last_batch_monotonic = time.monotonic()
        try:
            self.on_batch(batch, results)
        except Exception as error:  # noqa: BLE001 - a failing later stage must not stop detection for every camera.
            self._log_failure("processing results", batch, error)

    def _log_failure(self, step: str, batch: list[FramePacket], error: Exception | None) -> None:
        """Log the first failure with its traceback, then every 100th, because a broken stage fails every batch."""
        self.counters.errors += 1
        if self.counters.errors % ERROR_LOG_EVERY != 1:
            return
        log.error("%s: %s failed for cameras %s (failure %d); continuing with the next batch",
                  batch[0].camera_id, step, ", ".join(p.camera_id for p in batch), self.counters.errors,
                  exc_info=error)
