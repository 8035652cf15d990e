"""Warn when inference cannot keep up with the frames that a pipeline's cameras offer."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Seconds between two checks; at most one warning per pipeline per check.
CHECK_INTERVAL_S = 60.0
# Share of the offered frames that must have been dropped in an interval for a warning.
WARN_DROPPED_SHARE = 0.2
# Cameras named in a warning, those that dropped the most.
CAMERAS_NAMED = 3


@dataclass(frozen=True)
class CameraLoad:
    """Counters of one camera since the start: frames given to inference, and frames replaced unseen."""

    pipeline: str
    camera_id: str
    frames_inferred: int
    frames_dropped: int


class OverloadMonitor:
    """Compare the counters of each interval with the last ones, and warn about pipelines that drop frames.

    A slot keeps only a camera's newest frame, so an overloaded box drops frames instead of queueing them.
    That keeps latency bounded but lowers the analysis rate, which only the counters show.
    """

    def __init__(self, now_s: float, interval_s: float = CHECK_INTERVAL_S):
        self.interval_s = interval_s
        self._next_check_s = now_s + interval_s
        self._last: dict[str, CameraLoad] = {}
        self._last_check_s = now_s

    def check(self, now_s: float, read_loads: Callable[[], list[CameraLoad]]) -> None:
        """Warn about overloaded pipelines once an interval has passed; `read_loads` is called only then."""
        if now_s < self._next_check_s:
            return
        loads = read_loads()
        elapsed_s = now_s - self._last_check_s
        per_pipeline: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        for load in loads:
            last = self._last.get(load.camera_id)
            inferred = load.frames_inferred - (last.frames_inferred if last else 0)
            dropped = load.frames_dropped - (last.frames_dropped if last else 0)
            per_pipeline[load.pipeline].append((load.camera_id, inferred, dropped))
        for pipeline, cameras in sorted(per_pipeline.items()):
            self._warn_if_overloaded(pipeline, cameras, elapsed_s)
        self._last = {load.camera_id: load for load in loads}
        self._last_check_s = now_s
        self._next_check_s = now_s + self.interval_s

    @staticmethod
    def _warn_if_overloaded(pipeline: str, cameras: list[tuple[str, int, int]], elapsed_s: float) -> None:
        inferred = sum(camera[1] for camera in cameras)
        dropped = sum(camera[2] for camera in cameras)
        offered = inferred + dropped
        if offered == 0 or dropped / offered < WARN_DROPPED_SHARE:
            return
        worst = sorted(cameras, key=lambda camera: camera[2] / max(1, camera[1] + camera[2]), reverse=True)
        named = ", ".join(f"{camera_id} {100 * dropped_frames / max(1, inferred_frames + dropped_frames):.0f}%"
                          for camera_id, inferred_frames, dropped_frames in worst[:CAMERAS_NAMED])
        log.warning("pipeline %s is overloaded: in the last %.0f s inference took %.1f frames/s and dropped %d of "
                    "%d offered frames (%.0f%%; most on %s); lower max_fps, turn on motion_gating, use decode = "
                    "\"keyframes\" where one look per key frame is enough, or move cameras to another box",
                    pipeline, elapsed_s, inferred / elapsed_s, dropped, offered, 100 * dropped / offered, named)
