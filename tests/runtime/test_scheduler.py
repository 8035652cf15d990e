"""Batch scheduler: frames from several cameras share inference calls, and no camera is starved."""

from __future__ import annotations

import threading
import time

import cv2
import pytest

from edge.config.pipeline import DetectStage
from edge.ingest.slot import FramePacket
from edge.models.manifest import load_manifest, resolve_file
from edge.runtime.scheduler import BatchScheduler
from tests.conftest import BUS_IMAGE, MODEL_DIR


class RecordingDetector:
    """Wraps the real detector and records which cameras shared each call."""

    def __init__(self, detector, camera_of_frame):
        self.detector = detector
        self.camera_of_frame = camera_of_frame
        self.calls: list[list[str]] = []

    def detect(self, frames):
        self.calls.append([self.camera_of_frame[id(frame)] for frame in frames])
        return self.detector.detect(frames)


@pytest.fixture(scope="module")
def real_detector():
    from edge.runtime.detector import Detector

    entry = load_manifest().model("yolox_nano_416")
    return Detector(entry, resolve_file(entry, [MODEL_DIR]), DetectStage(model=entry.name, batch_size=4), ["cpu"])


def run_rounds(scheduler: BatchScheduler, camera_ids: list[str], rounds: int, frame, camera_of_frame) -> None:
    slots = {slot.camera_id: slot for slot in scheduler.slots}
    for index in range(rounds):
        for camera_id in camera_ids:
            copy = frame.copy()
            camera_of_frame[id(copy)] = camera_id
            slots[camera_id].put(FramePacket(camera_id, copy, time.time(), index))
        time.sleep(0.3)


def test_cameras_share_calls_and_rotate(real_detector):
    frame = cv2.imread(str(BUS_IMAGE))
    camera_of_frame: dict[int, str] = {}
    detector = RecordingDetector(real_detector, camera_of_frame)
    results: list[tuple[str, int]] = []
    stop = threading.Event()
    scheduler = BatchScheduler("detect", [detector], batch_size=4, max_wait_ms=100,
                               on_batch=lambda packets, dets: results.extend(
                                   (packet.camera_id, len(d)) for packet, d in zip(packets, dets)),
                               stop=stop)
    camera_ids = [f"cam-{i}" for i in range(6)]
    for camera_id in camera_ids:
        scheduler.add_slot(camera_id)
    scheduler.start()
    try:
        run_rounds(scheduler, camera_ids, 4, frame, camera_of_frame)
        time.sleep(0.5)
    finally:
        stop.set()
        scheduler.join(5)

    assert not scheduler.is_alive()
    assert max(len(call) for call in detector.calls) == 4
    assert all(len(set(call)) == len(call) for call in detector.calls), "a camera appeared twice in one call"
    served = {camera_id for camera_id, _ in results}
    assert served == set(camera_ids), "a camera was starved"
    assert all(count == 5 for _, count in results)
    assert scheduler.counters.frames == len(results)


def test_inference_error_is_counted_and_survived():
    class FailingOnce:
        def __init__(self):
            self.calls = 0

        def detect(self, frames):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("simulated provider failure")
            return [None] * len(frames)

    stop = threading.Event()
    delivered = []
    scheduler = BatchScheduler("detect", [FailingOnce()], batch_size=1, max_wait_ms=0,
                               on_batch=lambda packets, dets: delivered.extend(p.frame_index for p in packets),
                               stop=stop)
    slot = scheduler.add_slot("cam")
    scheduler.start()
    try:
        frame = cv2.imread(str(BUS_IMAGE))
        for index in range(3):
            slot.put(FramePacket("cam", frame, time.time(), index))
            time.sleep(0.2)
    finally:
        stop.set()
        scheduler.join(5)
    assert scheduler.counters.errors == 1
    assert delivered == [1, 2]


def test_processing_check_detects_stall():
    class Hanging:
        def __init__(self):
            self.release = threading.Event()

        def detect(self, frames):
            self.release.wait(10)
            return [None] * len(frames)

    detector = Hanging()
    stop = threading.Event()
    scheduler = BatchScheduler("detect", [detector], batch_size=1, max_wait_ms=0,
                               on_batch=lambda packets, dets: None, stop=stop)
    slot = scheduler.add_slot("cam")
    assert not scheduler.is_processing(stall_s=1.0)  # not started yet
    scheduler.start()
    try:
        assert scheduler.is_processing(stall_s=1.0)  # idle: no frames waiting
        frame = cv2.imread(str(BUS_IMAGE))
        slot.put(FramePacket("cam", frame, time.time(), 0))  # taken, then inference hangs
        time.sleep(0.2)
        slot.put(FramePacket("cam", frame, time.time(), 1))  # waits behind the hung batch
        time.sleep(1.2)
        assert not scheduler.is_processing(stall_s=1.0)
    finally:
        detector.release.set()
        stop.set()
        scheduler.join(15)
