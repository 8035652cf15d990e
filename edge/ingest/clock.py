"""A per-camera clock for the trackers, from the stream's own timestamps."""

from __future__ import annotations

import time
from collections.abc import Callable

# The clock follows media time unless media time runs ahead of the wall clock by more than this: a stream whose
# timestamps jump forward would otherwise look to the trackers like a long gap.
MAX_AHEAD_S = 5.0
# Smallest step after a re-anchoring, so that the trackers never see a zero interval.
MIN_STEP_S = 1e-3


class StreamClock:
    """Media time within a connection, continued across reconnects and timestamp jumps by the wall-clock gap.

    Decode time is the wrong clock for motion. After a connect a server sends its buffered frames in a burst,
    so frames 0.1 s apart in the stream are decoded milliseconds apart, and a tracker would read a fast move.
    Media time keeps the spacing of capture. It restarts with each RTSP session and may step back or
    jump, so at those points the clock re-anchors and goes on from its last value by the wall-clock gap.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic):
        self._monotonic = monotonic
        self._offset_s: float | None = None
        self._last_s: float | None = None
        self._last_monotonic = 0.0

    def restart(self) -> None:
        """Re-anchor at the next frame, as a new connection starts its media time again."""
        self._offset_s = None

    def time_of(self, media_time_s: float) -> float:
        """Return the clock value of a frame with media time `media_time_s`, always after the previous value."""
        now = self._monotonic()
        value = None if self._offset_s is None else media_time_s + self._offset_s
        if self._last_s is not None and value is not None:
            wall_gap_s = now - self._last_monotonic
            if value <= self._last_s or value - self._last_s > wall_gap_s + MAX_AHEAD_S:
                value = None  # the stream's timestamps stepped back or jumped ahead
        if value is None:
            value = now if self._last_s is None else self._last_s + max(now - self._last_monotonic, MIN_STEP_S)
            self._offset_s = value - media_time_s
        self._last_s, self._last_monotonic = value, now
        return value
