"""Shared parts of `edge bench pipeline` and `edge bench latency`: frames, detectors, a run of the pipeline.

Frames are decoded once from the demo clips before any timing, so the benches measure preprocessing,
inference, post-processing and tracking, not decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av
import cv2
import numba
import numpy as np
import onnxruntime as ort

from edge.config import PublisherConfig
from edge.config.pipeline import DetectStage
from edge.config.site import CameraConfig
from edge.ingest.decode import frame_to_bgr
from edge.ingest.slot import FramePacket, LatestFrameSlot
from edge.machine import cpu_model
from edge.models.manifest import AssetError, find_file, load_manifest, media_dirs, model_dirs, resolve_file
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.detector import Detector
from edge.runtime.layout import usable_cores
from edge.runtime.pipeline import PipelineRunner, PublishFunction
from edge.runtime.scheduler import BatchScheduler
from edge.runtime.session import SessionError

MODEL_NAME = "yolox_nano_416"
CLIP_NAMES = ("car-detection", "one-by-one-person-detection")
# Maximum wait for the scheduler's workers after a run. One batch of 8 on a slow CPU takes well under this.
STOP_TIMEOUT_S = 10.0


class BenchError(Exception):
    """A bench cannot run with these assets or settings."""


def check_batch_fits(batch: int, cameras: int) -> None:
    """Raise BenchError for a --batch that the --cameras can never fill."""
    if batch > cameras:
        # The scheduler takes at most one frame per camera into a call, so such a batch never fills.
        raise BenchError(f"--batch {batch} is larger than --cameras {cameras}, so each call would hold at most "
                         f"{cameras} frames while the report says batch {batch}; use --batch {cameras} or less, "
                         f"or --cameras {batch} or more")


@dataclass(frozen=True)
class WorkerLayout:
    workers: int
    threads: int  # intra_op_threads of each worker's session

    @property
    def label(self) -> str:
        return f"{self.workers} worker{'s' if self.workers > 1 else ''} x {self.threads} thread" + (
            "s" if self.threads > 1 else "")


def load_frames(count: int) -> list[np.ndarray]:
    """Decode `count` BGR frames spread evenly over the demo clips, alternating clip by clip."""
    manifest = load_manifest()
    per_clip = max(1, -(-count // len(CLIP_NAMES)))
    pools = []
    for name in CLIP_NAMES:
        entry = manifest.media[name]
        path = find_file(entry.file, entry.task, media_dirs())
        if path is None:
            raise BenchError(f"clip {entry.file} not found in {', '.join(map(str, media_dirs()))}; set "
                             "EDGE_MEDIA_DIR to the folder with the demo clips or run `edge models fetch "
                             f"{name}`")
        pools.append(_decode_spread(path, per_clip))
    frames = [pool[i] for i in range(per_clip) for pool in pools if i < len(pool)]
    return frames[:count]


def _decode_spread(path: Path, count: int) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        # Only the kept frames are converted to BGR. A container without a frame count gives its first frames.
        step = max(1, stream.frames // count) if stream.frames else 1
        frames = []
        for index, frame in enumerate(container.decode(stream)):
            if index % step == 0:
                frames.append(frame_to_bgr(frame))
            if len(frames) == count:
                break
    if not frames:
        raise BenchError(f"{path} has no video frames; replace it with the clip of its manifest entry")
    return frames


def model_path() -> Path:
    entry = load_manifest().model(MODEL_NAME)
    try:
        return resolve_file(entry, model_dirs())
    except AssetError as error:
        raise BenchError(str(error)) from error


def build_workers(layout: WorkerLayout, batch_size: int, providers: list[str]) -> list[Detector]:
    """Create one Detector per worker, each with its own session of `layout.threads` threads."""
    entry = load_manifest().model(MODEL_NAME)
    stage = DetectStage(model=MODEL_NAME, batch_size=batch_size)
    path = model_path()
    return [Detector(entry, path, stage, providers, layout.threads) for _ in range(layout.workers)]


def bench_cameras(count: int) -> dict[str, CameraAnalysis]:
    """Per-camera tracker and counters for `count` synthetic cameras named cam-00, cam-01, ..."""
    analyses = {}
    for index in range(count):
        camera = CameraConfig(id=f"cam-{index:02d}", name=f"bench camera {index}", source="bench.mp4")
        analyses[camera.id] = CameraAnalysis(camera)
    return analyses


@dataclass
class PipelineRun:
    """A scheduler with its workers, the pipeline runner behind it, and the stop event of both."""

    scheduler: BatchScheduler
    runner: PipelineRunner
    stop: threading.Event

    def close(self) -> None:
        self.stop.set()
        self.scheduler.join(STOP_TIMEOUT_S)
        if self.scheduler.is_alive():
            raise BenchError(f"inference workers still running {STOP_TIMEOUT_S:g} s after the stop")


def start_pipeline(workers: list[Detector], batch_size: int, max_wait_ms: float, cameras: int,
                   publish: PublishFunction, send_empty_frames: bool,
                   make_slot: Callable[[str, threading.Condition], LatestFrameSlot] | None = None) -> PipelineRun:
    """Start scheduler and workers for `cameras` cameras, with slots from `make_slot` when given."""
    stop = threading.Event()
    analyses = bench_cameras(cameras)
    runner = PipelineRunner(analyses, publish, PublisherConfig(send_empty_frames=send_empty_frames), [])
    scheduler = BatchScheduler("bench", workers, batch_size, max_wait_ms, runner.on_batch, stop)
    for camera_id in analyses:
        scheduler.attach_slot(make_slot(camera_id, scheduler.ready) if make_slot else
                              LatestFrameSlot(camera_id, scheduler.ready))
    scheduler.start()
    return PipelineRun(scheduler, runner, stop)


class SaturatedSlot(LatestFrameSlot):
    """Slot of a camera that always has a new frame waiting, so the pipeline runs as fast as it can."""

    def __init__(self, camera_id: str, ready: threading.Condition, frames: list[np.ndarray], offset: int):
        super().__init__(camera_id, ready)
        self._frames = frames
        self._frames_taken = offset  # cameras start at different frames of the pool

    def take(self) -> FramePacket:
        frame = self._frames[self._frames_taken % len(self._frames)]
        packet = FramePacket(self.camera_id, frame, time.time(), self._frames_taken)
        self._frames_taken += 1
        return packet

    @property
    def has_frame(self) -> bool:
        return True


def measure_saturated(workers: list[Detector], batch_size: int, cameras: int, frames: list[np.ndarray],
                      seconds: float) -> float:
    """Return frames/s through preprocess, inference, post-processing and tracking with every camera busy.

    The rate is taken between two batch completions, the first and the last in the run, so no partly
    done batch counts at either end: a batch of 8 is a large part of a run of a few seconds.
    """
    run = start_pipeline(workers, batch_size, max_wait_ms=0.0, cameras=cameras,
                         publish=lambda topic, body, images: True, send_empty_frames=False,
                         make_slot=lambda camera_id, ready: SaturatedSlot(camera_id, ready, frames,
                                                                          int(camera_id[4:])))
    completions: list[tuple[float, int]] = []
    hand_on = run.scheduler.on_batch

    def record(packets, results) -> None:
        hand_on(packets, results)
        completions.append((time.perf_counter(), len(packets)))

    run.scheduler.on_batch = record
    counters = run.scheduler.counters
    try:
        # The first completion opens the window, so first use of buffers and sessions stays out of it.
        while not completions and run.scheduler.is_alive() and counters.errors == 0:
            time.sleep(0.01)
        time.sleep(seconds)
        # A run needs a second completion to close the window.
        while len(completions) < 2 and run.scheduler.is_alive() and counters.errors == 0:
            time.sleep(0.01)
    finally:
        run.close()
    if counters.errors:
        raise BenchError(f"{counters.errors} batch(es) failed during the saturated run; rerun with "
                         "--log-level DEBUG to see the error")
    window = list(completions)
    (first_time, _), (last_time, _) = window[0], window[-1]
    return sum(count for _, count in window[1:]) / (last_time - first_time)


def machine_facts(providers: list[str]) -> dict[str, str]:
    cpu = cpu_model()
    return {"cpu": cpu, "cores": f"{os.cpu_count()} logical, {usable_cores()} usable by this process",
            "kernel": platform.release(), "python": platform.python_version(), "onnxruntime": ort.__version__,
            "providers": ", ".join(providers), "numba": numba.__version__, "numpy": np.__version__,
            "opencv": cv2.__version__, "av": av.__version__, "model": MODEL_NAME}


def print_report(args: argparse.Namespace, run_bench: Callable[[argparse.Namespace], dict],
                 format_report: Callable[[dict], str]) -> int:
    """Run a bench and print its report as a table, or as JSON with --json; return the exit code."""
    try:
        report = run_bench(args)
    except (BenchError, SessionError) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
