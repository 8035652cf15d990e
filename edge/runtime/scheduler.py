"""Batch scheduler: gather frames across cameras into one inference call, at most W ms after the first."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

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
    inference_s: float = 0.0

    def snapshot(self) -> dict:
        mean_batch = self.frames / self.batches if self.batches else 0.0
        mean_ms = 1000 * self.inference_s / self.batches if self.batches else 0.0
        return {"batches": self.batches, "frames": self.frames, "errors": self.errors,
                "mean_batch_size": round(mean_batch, 2), "mean_batch_ms": round(mean_ms, 2)}


class BatchScheduler(threading.Thread):
    """Takes the newest frame of each camera, up to `batch_size` per call, serving cameras in rotation."""

    def __init__(self, name: str, detector: BatchDetector, batch_size: int, max_wait_ms: float,
                 on_batch: BatchHandler, stop: threading.Event):
        super().__init__(name=f"scheduler-{name}", daemon=True)
        self.pipeline_name = name
        self.detector = detector
        self.batch_size = batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.on_batch = on_batch
        self.stop_event = stop
        self.ready = threading.Condition()
        self.slots: list[LatestFrameSlot] = []
        self.counters = SchedulerCounters()
        self.last_batch_monotonic = time.monotonic()
        self._next_slot = 0

    def add_slot(self, camera_id: str) -> LatestFrameSlot:
        slot = LatestFrameSlot(camera_id, self.ready)
        self.slots.append(slot)
        return slot

    def is_processing(self, stall_s: float) -> bool:
        """True unless the thread died or frames have waited while no batch finished for `stall_s`.

        An idle scheduler (no camera delivers frames) counts as processing, so a quiet site is not restarted.
        """
        if not self.is_alive():
            return False
        waiting = any(slot.has_frame for slot in self.slots)
        return not waiting or time.monotonic() - self.last_batch_monotonic < stall_s

    def run(self) -> None:
        while not self.stop_event.is_set():
            batch = self._collect_batch()
            if batch:
                self._infer(batch)

    def _ready_count(self) -> int:
        return sum(slot.has_frame for slot in self.slots)

    def _collect_batch(self) -> list[FramePacket]:
        with self.ready:
            if not self.ready.wait_for(lambda: self._ready_count() > 0 or self.stop_event.is_set(), IDLE_POLL_S):
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

    def _infer(self, batch: list[FramePacket]) -> None:
        started = time.perf_counter()
        try:
            results = self.detector.detect([packet.frame_bgr for packet in batch])
        except Exception:  # noqa: BLE001 - one bad batch must not stop detection for every camera.
            self._log_failure("inference", batch)
            return
        self.counters.inference_s += time.perf_counter() - started
        self.counters.batches += 1
        self.counters.frames += len(batch)
        self.last_batch_monotonic = time.monotonic()
        try:
            self.on_batch(batch, results)
        except Exception:  # noqa: BLE001 - a failing later stage must not stop detection for every camera.
            self._log_failure("processing results", batch)

    def _log_failure(self, step: str, batch: list[FramePacket]) -> None:
        """Log the first failure with its traceback, then every 100th, because a broken stage fails every batch."""
        self.counters.errors += 1
        if self.counters.errors % ERROR_LOG_EVERY != 1:
            return
        log.error("%s: %s failed for cameras %s (failure %d); continuing with the next batch",
                  batch[0].camera_id, step, ", ".join(p.camera_id for p in batch), self.counters.errors,
                  exc_info=True)
