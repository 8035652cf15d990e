"""Motion gate decisions: motion, tracks that keep the gate open, keep-alive timing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge.config.pipeline import TrackStage
from edge.config.site import CameraConfig
from edge.ingest.motion_gate import GateReason, MotionGate, count_gate_tracks, decide, keeps_gate_open
from edge.runtime.detector import Detections
from edge.track.tracker import Track, Tracker

THRESHOLD = 0.01

# (motion, gate tracks, keep-alive due) -> expected reason; every combination of the three conditions.
DECISIONS = {
    (True, True, True): GateReason.MOTION,
    (True, True, False): GateReason.MOTION,
    (True, False, True): GateReason.MOTION,
    (True, False, False): GateReason.MOTION,
    (False, True, True): GateReason.TRACKS,
    (False, True, False): GateReason.TRACKS,
    (False, False, True): GateReason.KEEPALIVE,
    (False, False, False): GateReason.GATED,
}


@pytest.mark.parametrize(("moving", "tracks", "due"), list(itertools.product([True, False], repeat=3)))
def test_decision_table(moving, tracks, due):
    motion = THRESHOLD if moving else THRESHOLD / 2
    assert decide(motion, THRESHOLD, 2 if tracks else 0, due) is DECISIONS[(moving, tracks, due)]


def test_motion_exactly_at_threshold_sends():
    assert decide(0.01, 0.01, 0, False) is GateReason.MOTION


def make_track(box, velocity=(0, 0, 0, 0), hits=5, misses=0) -> Track:
    return Track(track_id=1, class_id=2, box_xyxy=np.array(box, dtype=np.float32), score=0.9, hits=hits,
                 misses=misses, velocity_xyxy=np.array(velocity, dtype=np.float32))


TRACK_CASES = {
    "parked car": (make_track([100, 100, 300, 200], velocity=(0.5, -0.3, 0.4, 0.2)), False),
    "walking person": (make_track([100, 100, 140, 220], velocity=(6, 1, 6, 1)), True),
    "slow but moving": (make_track([100, 100, 300, 200], velocity=(4, 0, 4, 0)), True),
    "walking towards camera": (make_track([100, 100, 140, 220], velocity=(-1, -3, 1, 3)), True),
    "young track": (make_track([100, 100, 300, 200], hits=2), True),
    "object lost": (make_track([100, 100, 300, 200], misses=1), True),
}


@pytest.mark.parametrize(("track", "expected"), TRACK_CASES.values(), ids=TRACK_CASES.keys())
def test_track_keeps_gate_open(track, expected):
    assert keeps_gate_open(track) is expected


def detections(*boxes_xyxy) -> Detections:
    count = len(boxes_xyxy)
    return Detections(np.array(boxes_xyxy, dtype=np.float32).reshape(count, 4), np.full(count, 0.9, np.float32),
                      np.full(count, 2, np.int64))


def test_parked_car_releases_gate():
    """A car detected in the same place, with a pixel of jitter, keeps the gate open only while its track is young."""
    tracker = Tracker()
    counts = []
    for index in range(6):
        jitter = (index % 2) * 1.0
        tracker.update(detections([200 + jitter, 150, 400 + jitter, 260]))
        counts.append(count_gate_tracks(tracker.tracks))
    assert counts[:2] == [1, 1]
    assert counts[-1] == 0


def test_moving_car_keeps_gate_open():
    tracker = Tracker()
    counts = []
    for index in range(6):
        tracker.update(detections([200 + 15 * index, 150, 400 + 15 * index, 260]))
        counts.append(count_gate_tracks(tracker.tracks))
    assert counts == [1] * 6


def test_lost_object_keeps_gate_until_end():
    # At the nominal 0.1 s per untimed frame, a 0.25 s buffer keeps the lost track for three missed frames.
    tracker = Tracker(TrackStage(lost_buffer_s=0.25))
    for _ in range(4):
        tracker.update(detections([200, 150, 400, 260]))
    assert count_gate_tracks(tracker.tracks) == 0
    counts = []
    for _ in range(5):
        tracker.update(detections())
        counts.append(count_gate_tracks(tracker.tracks))
    assert counts == [1, 1, 1, 0, 0]


def camera(**fields) -> CameraConfig:
    settings = {"id": "gate-cam", "name": "gate", "source": "clip.mp4", "motion_gating": True,
                "motion_threshold": 0.01, "keepalive_interval_s": 2.0, **fields}
    return CameraConfig(**settings)


def scene(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 220, size=(432, 768, 3), dtype=np.uint8)


def with_square(frame: np.ndarray, left: int) -> np.ndarray:
    moved = frame.copy()
    moved[100:220, left:left + 120] = 255
    return moved


def test_static_scene_sends_keepalive_only():
    gate = MotionGate(camera(), lambda: 0)
    frame = scene()
    reasons = [gate.check(frame, index * 0.1) for index in range(51)]  # 5 s at 10 fps
    sent = [index for index, reason in enumerate(reasons) if reason is not GateReason.GATED]
    # The first frame has no background (motion 1.0). Then a keep-alive follows every 2 s of media time.
    assert reasons[0] is GateReason.MOTION
    assert sent == [0, 20, 40]
    assert all(reasons[index] is GateReason.KEEPALIVE for index in sent[1:])
    assert gate.reasons[GateReason.GATED] == 48


def test_motion_opens_gate():
    gate = MotionGate(camera(), lambda: 0)
    background = scene()
    gate.check(background, 0.0)
    gate.check(background, 0.1)
    reasons = [gate.check(with_square(background, 50 + 40 * step), 0.2 + 0.1 * step) for step in range(5)]
    assert reasons == [GateReason.MOTION] * 5
    assert gate.last_motion > 0.01


def test_motion_in_ignore_zone_is_gated():
    gate = MotionGate(camera(ignore_zones=[[[0.0, 0.0], [0.5, 0.0], [0.5, 0.6], [0.0, 0.6]]]), lambda: 0)
    background = scene()
    gate.check(background, 0.0)
    # The square moves within x 50..330 and y 100..220 px, inside the zone (x < 384, y < 259 px).
    reasons = [gate.check(with_square(background, 50 + 40 * step), 0.1 + 0.1 * step) for step in range(5)]
    assert reasons == [GateReason.GATED] * 5


def test_moving_tracks_open_gate_without_motion():
    live_tracks = [0]
    gate = MotionGate(camera(), lambda: live_tracks[0])
    frame = scene()
    gate.check(frame, 0.0)
    assert gate.check(frame, 0.1) is GateReason.GATED
    live_tracks[0] = 1
    assert gate.check(frame, 0.2) is GateReason.TRACKS
    live_tracks[0] = 0
    assert gate.check(frame, 0.3) is GateReason.GATED


def test_keepalive_counts_from_last_sent_frame():
    live_tracks = [0]
    gate = MotionGate(camera(), lambda: live_tracks[0])
    frame = scene()
    gate.check(frame, 0.0)
    live_tracks[0] = 1
    gate.check(frame, 1.5)  # sent for its track, so the keep-alive interval starts again here
    live_tracks[0] = 0
    assert gate.check(frame, 3.0) is GateReason.GATED
    assert gate.check(frame, 3.5) is GateReason.KEEPALIVE


def test_clock_going_back_sends_keepalive():
    gate = MotionGate(camera(), lambda: 0)
    frame = scene()
    gate.check(frame, 100.0)
    assert gate.check(frame, 100.5) is GateReason.GATED
    assert gate.check(frame, 3.0) is GateReason.KEEPALIVE


def test_frame_size_change_sends_frame():
    gate = MotionGate(camera(), lambda: 0)
    gate.check(scene(), 0.0)
    assert gate.check(scene(), 0.1) is GateReason.GATED
    smaller = np.ascontiguousarray(scene()[:360, :640])
    assert gate.check(smaller, 0.2) is GateReason.MOTION
    assert gate.check(smaller, 0.3) is GateReason.GATED
