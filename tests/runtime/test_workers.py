"""Inference workers: configuration, identical results with 1 and 2 workers, overload drops, idle cost."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from pydantic import ValidationError

from edge.config.pipeline import DetectStage
from edge.config.site import RuntimeConfig
from edge.ingest.slot import FramePacket
from edge.runtime import layout as layout_module
from edge.runtime.bench_support import WorkerLayout, build_workers, load_frames
from edge.runtime.layout import DEVICE_DEFAULTS, resolve_layout
from edge.runtime.scheduler import BatchScheduler
from edge.track.tracker import Tracker
from tests.conftest import wait_until

CAMERAS = [f"cam-{index}" for index in range(4)]


@pytest.fixture(scope="module")
def frames():
    return load_frames(12)


@pytest.fixture(scope="module")
def two_workers():
    return build_workers(WorkerLayout(workers=2, threads=1), batch_size=4, providers=["cpu"])


class CountingDetector:
    """Wraps a real detector and counts its calls, to show which workers ran."""

    def __init__(self, detector):
        self.detector = detector
        self.calls = 0

    def detect(self, frames_bgr):
        self.calls += 1
        return self.detector.detect(frames_bgr)


class Recorder:
    """The later stages of a pipeline: one tracker per camera, and every frame handed on, in order."""

    def __init__(self):
        self.trackers = {camera_id: Tracker() for camera_id in CAMERAS}
        self.handed_on: list[tuple[str, int]] = []
        self.results: dict[tuple[str, int], tuple] = {}

    def on_batch(self, packets, results):
        for packet, detections in zip(packets, results):
            track_ids = self.trackers[packet.camera_id].update(detections).track_ids
            key = (packet.camera_id, packet.frame_index)
            self.handed_on.append(key)
            self.results[key] = (detections, track_ids)


def start_scheduler(detectors, recorder: Recorder, batch_size: int, max_wait_ms: float = 50.0):
    stop = threading.Event()
    scheduler = BatchScheduler("test", detectors, batch_size, max_wait_ms, recorder.on_batch, stop)
    slots = {camera_id: scheduler.add_slot(camera_id) for camera_id in CAMERAS}
    scheduler.start()
    return scheduler, slots, stop


def stop_scheduler(scheduler: BatchScheduler, stop: threading.Event) -> None:
    stop.set()
    scheduler.join(10)
    assert not scheduler.is_alive()


def run_rounds(detectors, frames, rounds: int) -> Recorder:
    """Give every camera one frame per round and wait until the round is handed on, so nothing is dropped."""
    recorder = Recorder()
    scheduler, slots, stop = start_scheduler(detectors, recorder, batch_size=2)
    try:
        for index in range(rounds):
            for offset, camera_id in enumerate(CAMERAS):
                frame = frames[(index + offset) % len(frames)]
                slots[camera_id].put(FramePacket(camera_id, frame, time.time(), index))
            expected = (index + 1) * len(CAMERAS)
            assert wait_until(lambda: len(recorder.handed_on) == expected, 30), "a round was not handed on"
    finally:
        stop_scheduler(scheduler, stop)
    assert scheduler.counters.errors == 0
    return recorder


def test_config_bounds_inference_workers():
    assert RuntimeConfig().inference_workers is None
    assert RuntimeConfig(inference_workers=3).inference_workers == 3
    for invalid in (0, 17):
        with pytest.raises(ValidationError, match="inference_workers"):
            RuntimeConfig(inference_workers=invalid)


def test_cpu_layout_defaults_and_overrides():
    stage_unset = DetectStage(model="m")
    stage_set = DetectStage(model="m", batch_size=2)
    cpu = resolve_layout(RuntimeConfig(providers=["cpu"]), stage_unset, cores=2)
    assert cpu.device_class == "cpu"
    assert cpu.inference_workers == DEVICE_DEFAULTS["cpu"].inference_workers
    assert cpu.intra_op_threads == max(1, 2 // cpu.inference_workers)
    assert cpu.batch_size == DEVICE_DEFAULTS["cpu"].batch_size

    explicit = resolve_layout(RuntimeConfig(providers=["cpu"], inference_workers=1, intra_op_threads=3),
                              stage_set, cores=8)
    assert (explicit.inference_workers, explicit.intra_op_threads, explicit.batch_size) == (1, 3, 2)
    # With 4 workers on 8 cores, each worker gets 2 threads, so the workers use each core once.
    assert resolve_layout(RuntimeConfig(providers=["cpu"], inference_workers=4), stage_set, cores=8
                          ).intra_op_threads == 2


def test_gpu_layout_uses_gpu_defaults(monkeypatch):
    # This onnxruntime build has no GPU provider, so the provider lookup is replaced.
    monkeypatch.setattr(layout_module, "choose_providers", lambda requested: ["CUDAExecutionProvider"])
    gpu = resolve_layout(RuntimeConfig(providers=["cuda", "cpu"]), DetectStage(model="m"), cores=16)
    assert gpu.device_class == "gpu"
    assert gpu.inference_workers == DEVICE_DEFAULTS["gpu"].inference_workers
    assert gpu.intra_op_threads == 0
    assert gpu.batch_size == DEVICE_DEFAULTS["gpu"].batch_size


def test_scheduler_rejects_no_detectors():
    with pytest.raises(ValueError, match="at least one detector"):
        BatchScheduler("test", [], 4, 20, lambda packets, results: None, threading.Event())


def test_two_workers_match_one_worker(frames, two_workers):
    rounds = 6
    single = run_rounds([two_workers[0]], frames, rounds)
    counting = [CountingDetector(worker) for worker in two_workers]
    double = run_rounds(counting, frames, rounds)

    assert all(detector.calls > 0 for detector in counting), "both workers should have run batches"
    assert set(double.results) == set(single.results)
    found = sum(len(detections) for detections, _ in single.results.values())
    assert found > 0, "the clip frames should contain vehicles or people"
    for key, (expected, expected_tracks) in single.results.items():
        detections, track_ids = double.results[key]
        np.testing.assert_array_equal(detections.class_ids, expected.class_ids, err_msg=str(key))
        np.testing.assert_allclose(detections.boxes_xyxy, expected.boxes_xyxy, atol=1e-3, err_msg=str(key))
        np.testing.assert_allclose(detections.scores, expected.scores, atol=1e-5, err_msg=str(key))
        np.testing.assert_array_equal(track_ids, expected_tracks, err_msg=str(key))
    for camera_id in CAMERAS:
        indices = [index for camera, index in double.handed_on if camera == camera_id]
        assert indices == sorted(indices), f"{camera_id}: frames handed on out of order"


def test_overload_drops_stalest_frames_and_counts_them(frames, two_workers):
    recorder = Recorder()
    scheduler, slots, stop = start_scheduler(two_workers, recorder, batch_size=2, max_wait_ms=0)
    puts = {camera_id: 0 for camera_id in CAMERAS}
    try:
        # Bursts of 5 frames per camera, far faster than 2 workers can infer them.
        for burst in range(4):
            for _ in range(5):
                for camera_id in CAMERAS:
                    slots[camera_id].put(FramePacket(camera_id, frames[burst], time.time(), puts[camera_id]))
                    puts[camera_id] += 1
            time.sleep(0.05)
        assert wait_until(lambda: not any(slot.has_frame for slot in slots.values()), 30)
        assert wait_until(lambda: scheduler.counters.frames == len(recorder.handed_on), 30)
    finally:
        stop_scheduler(scheduler, stop)

    for camera_id, slot in slots.items():
        inferred = [index for camera, index in recorder.handed_on if camera == camera_id]
        assert slot.dropped > 0, f"{camera_id}: the bursts should have dropped frames"
        assert len(inferred) + slot.dropped == puts[camera_id], f"{camera_id}: a frame was lost uncounted"
        assert inferred == sorted(inferred), f"{camera_id}: frames handed on out of order"
        assert inferred[-1] == puts[camera_id] - 1, f"{camera_id}: the newest frame was dropped"


def thread_cpu_ticks(native_ids: list[int]) -> int:
    """Return user plus system clock ticks of these threads of this process, from /proc."""
    total = 0
    for native_id in native_ids:
        fields = open(f"/proc/self/task/{native_id}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of stat(5)
    return total


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads thread CPU time from Linux /proc")
def test_idle_cameras_cost_no_busy_waiting(two_workers):
    """Cameras that never deliver a frame leave the workers asleep: a busy loop would burn about 100 ticks/s."""
    recorder = Recorder()
    scheduler, _slots, stop = start_scheduler(two_workers, recorder, batch_size=4, max_wait_ms=0)
    try:
        native_ids = [worker.native_id for worker in scheduler.workers]
        before = thread_cpu_ticks(native_ids)
        time.sleep(1.0)
        ticks = thread_cpu_ticks(native_ids) - before
    finally:
        stop_scheduler(scheduler, stop)
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    assert ticks < ticks_per_s // 10, f"idle workers used {ticks} CPU ticks in 1 s"
    assert recorder.handed_on == []


def test_dead_camera_does_not_hold_back_live_ones(frames, two_workers):
    recorder = Recorder()
    # Batches of 4 with 4 cameras, but only cam-0 delivers: each batch waits max_wait_ms, then goes.
    scheduler, slots, stop = start_scheduler(two_workers, recorder, batch_size=4, max_wait_ms=30)
    try:
        for index in range(5):
            slots["cam-0"].put(FramePacket("cam-0", frames[index], time.time(), index))
            assert wait_until(lambda: len(recorder.handed_on) == index + 1, 30)
    finally:
        stop_scheduler(scheduler, stop)
    assert recorder.handed_on == [("cam-0", index) for index in range(5)]


class SlowDetector(CountingDetector):
    """A real detector that returns late, so a later batch on the other worker finishes first."""

    def detect(self, frames_bgr):
        time.sleep(0.3)
        return super().detect(frames_bgr)


def test_results_handed_on_in_taking_order(frames, two_workers):
    recorder = Recorder()
    workers = [SlowDetector(two_workers[0]), CountingDetector(two_workers[1])]
    scheduler, slots, stop = start_scheduler(workers, recorder, batch_size=1, max_wait_ms=0)
    try:
        # Each frame is put once the previous one was taken, so the two workers take turns and the fast
        # worker's frame is ready before the slow worker's earlier frame.
        for index in range(6):
            slots["cam-0"].put(FramePacket("cam-0", frames[index], time.time(), index))
            assert wait_until(lambda: not slots["cam-0"].has_frame, 30)
        assert wait_until(lambda: len(recorder.handed_on) == 6, 30)
    finally:
        stop_scheduler(scheduler, stop)
    assert all(worker.calls > 0 for worker in workers), "both workers should have taken frames"
    assert recorder.handed_on == [("cam-0", index) for index in range(6)]
