"""Latest-frame slot: a one-frame mailbox between a camera reader and the batch scheduler."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FramePacket:
    """A decoded frame and where it came from."""

    camera_id: str
    frame_bgr: np.ndarray  # HxWx3 uint8
    frame_time_utc: float  # seconds since the epoch when the frame was decoded
    frame_index: int  # frames decoded by this reader so far, counting from 0
    # Capture time on the camera's StreamClock; None where the frame did not come from a reader.
    stream_time_s: float | None = None

    @property
    def tracker_time_s(self) -> float:
        """Return the time that trackers use: the stream clock, else the decode time."""
        return self.stream_time_s if self.stream_time_s is not None else self.frame_time_utc


class LatestFrameSlot:
    """Holds only the newest frame: a frame not yet taken is replaced and counted as dropped.

    A slow pipeline therefore gets fresh frames instead of a growing backlog, and memory stays bounded
    at one frame per camera.
    """

    def __init__(self, camera_id: str, ready: threading.Condition):
        self.camera_id = camera_id
        self._ready = ready
        self._packet: FramePacket | None = None
        self.dropped = 0

    def put(self, packet: FramePacket) -> None:
        with self._ready:
            if self._packet is not None:
                self.dropped += 1
            self._packet = packet
            self._ready.notify()

    def take(self) -> FramePacket | None:
        """Remove and return the waiting frame, or None; call with the scheduler's condition held."""
        packet, self._packet = self._packet, None
        return packet

    @property
    def has_frame(self) -> bool:
        return self._packet is not None
