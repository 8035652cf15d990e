"""The trackers' per-camera clock: media-time spacing within a connection, continuous across reconnects."""

from __future__ import annotations

import pytest

from edge.ingest.clock import MAX_AHEAD_S, MIN_STEP_S, StreamClock


class FakeMonotonic:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_keeps_media_spacing():
    """Frames 0.1 s apart in the stream, decoded all at once after a connect, stay 0.1 s apart."""
    wall = FakeMonotonic()
    clock = StreamClock(wall)
    values = [clock.time_of(media) for media in (5.0, 5.1, 5.2, 5.3)]
    assert [round(b - a, 6) for a, b in zip(values, values[1:])] == [0.1, 0.1, 0.1]


def test_reconnect_continues_by_wall_gap():
    wall = FakeMonotonic()
    clock = StreamClock(wall)
    clock.time_of(50.0)
    last = clock.time_of(50.1)
    wall.now += 7.0
    clock.restart()
    # The new session's media time starts near zero again.
    assert clock.time_of(0.2) == pytest.approx(last + 7.0)
    assert clock.time_of(0.3) == pytest.approx(last + 7.1)


def test_timestamps_stepping_back_reanchor():
    wall = FakeMonotonic()
    clock = StreamClock(wall)
    last = clock.time_of(10.0)
    assert clock.time_of(9.0) == pytest.approx(last + MIN_STEP_S)
    wall.now += 0.5
    following = clock.time_of(9.5)
    assert following > last


def test_forward_jump_limited_to_wall_gap():
    wall = FakeMonotonic()
    clock = StreamClock(wall)
    last = clock.time_of(10.0)
    wall.now += 0.1
    jumped = clock.time_of(10.0 + 3600)
    assert jumped == pytest.approx(last + 0.1)
    assert jumped - last < MAX_AHEAD_S
