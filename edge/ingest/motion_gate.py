"""Motion gate: pass a camera's frame to the detector only when something may have changed.

A frame is sent when the scene moves, when the camera's tracker follows an object that moves or has lost
sight of it, or when the keep-alive interval has passed since the last frame sent. Every other frame is
gated: the reader counts it and never puts it in the slot.

Stationary tracks, such as a parked car or a waiting pedestrian, do not keep the gate open. Otherwise one parked
car would send every frame of the camera for as long as it stays, and gating would save nothing on most
streets. Such a track is confirmed at each keep-alive frame instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Protocol

import numpy as np

from edge.config.site import CameraConfig
from edge.core.motion import MotionDetector

# A track none of whose box edges moves by this fraction of the box's longer side per inferred frame is
# stationary. Detector jitter on a still object stays below it, while a person walking across the view at 10 fps
# moves about 0.1 of their height per frame. Edges rather than the centre, so that an object walking towards or
# away from the camera, whose box mostly grows or shrinks, counts as moving.
# NOTE: 0.02 is an estimate from the test clips. An object that moves slower is sent only while it also shows
# motion_threshold of motion, or at keep-alive frames.
MOVING_SPEED_FRACTION = 0.02
# A track matched fewer times than this has no reliable velocity yet, so it keeps the gate open until it has.
MIN_HITS_FOR_SPEED = 3


class GateReason(str, Enum):
    """Reason a frame was sent to the detector, or GATED when it was not."""

    MOTION = "motion"
    TRACKS = "tracks"
    KEEPALIVE = "keepalive"
    GATED = "gated"


def decide(motion: float, motion_threshold: float, gate_tracks: int, keepalive_due: bool) -> GateReason:
    """Return the first reason to send a frame, in the order motion, tracks, keep-alive, or GATED for none."""
    if motion >= motion_threshold:
        return GateReason.MOTION
    if gate_tracks > 0:
        return GateReason.TRACKS
    if keepalive_due:
        return GateReason.KEEPALIVE
    return GateReason.GATED


class TrackState(Protocol):
    """The fields of a tracker track that the gate reads (edge.track.tracker.Track has them)."""

    box_xyxy: np.ndarray
    velocity_xyxy: np.ndarray
    hits: int
    misses: int


def keeps_gate_open(track: TrackState) -> bool:
    """Return True for a track that is young, lost its object in the last inferred frame, or moves."""
    if track.misses > 0 or track.hits < MIN_HITS_FOR_SPEED:
        return True
    box = track.box_xyxy
    size_px = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)
    edge_speed_px = float(np.abs(track.velocity_xyxy).max())
    return edge_speed_px >= MOVING_SPEED_FRACTION * size_px


def count_gate_tracks(tracks: Iterable[TrackState]) -> int:
    """Return how many tracks keep the gate open. Call it in the thread that updates the tracker."""
    return sum(keeps_gate_open(track) for track in tracks)


class MotionGate:
    """Gate of one camera, called by its reader thread for every frame that passed max_fps.

    `gate_tracks` returns the number of tracks that keep the gate open, as counted after the camera's last
    inferred frame. `media_time_s` is the stream clock of the reader, so keep-alive frames follow the
    video's own timing, also for files read faster than real time.
    """

    def __init__(self, camera: CameraConfig, gate_tracks: Callable[[], int]):
        self.camera_id = camera.id
        self.motion_threshold = camera.motion_threshold
        self.keepalive_interval_s = camera.keepalive_interval_s
        self.gate_tracks = gate_tracks
        self.detector = MotionDetector(camera.ignore_zones)
        self.last_sent_s: float | None = None
        self.last_motion = 0.0
        self.reasons: Counter[GateReason] = Counter()

    def keepalive_due(self, media_time_s: float) -> bool:
        # A clock that went back (file loop, camera restart) makes the last send time meaningless.
        if self.last_sent_s is None or media_time_s < self.last_sent_s:
            return True
        return media_time_s - self.last_sent_s >= self.keepalive_interval_s

    def check(self, frame_bgr: np.ndarray, media_time_s: float) -> GateReason:
        """Measure motion in the frame and return why it is sent, or GATED."""
        # Motion is measured on every frame, sent or not, so the background keeps following the scene.
        self.last_motion = self.detector.measure(frame_bgr)
        reason = decide(self.last_motion, self.motion_threshold, self.gate_tracks(),
                        self.keepalive_due(media_time_s))
        self.reasons[reason] += 1
        if reason is not GateReason.GATED:
            self.last_sent_s = media_time_s
        return reason
