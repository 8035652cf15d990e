"""Decoding steps shared by the camera reader and `edge bench decode`: decode mode, damage gate, BGR conversion."""

from __future__ import annotations

import logging
import time

import av
import numpy as np

log = logging.getLogger(__name__)

# A camera with a bad link can damage every GOP; one warning per burst start is enough, at most this often.
DAMAGE_WARNING_INTERVAL_S = 60.0


def configure_decoder(stream: av.video.stream.VideoStream, mode: str, frame_threads: bool = True) -> None:
    """Set up the stream's decoder for decode mode 'all' or 'keyframes'."""
    # Frame threading adds latency of a few frames but spreads one camera's decoding over cores.
    stream.thread_type = "AUTO" if frame_threads else "NONE"
    if mode == "keyframes":
        # FFmpeg's skip_frame: the decoder parses every packet but reconstructs key frames only.
        stream.codec_context.skip_frame = "NONKEY"


def frame_to_bgr(frame: av.VideoFrame, max_width: int | None = None) -> np.ndarray:
    """Convert a decoded frame of any pixel format (8 or 10 bit) to a C-contiguous HxWx3 uint8 BGR array.

    A frame wider than `max_width` is scaled down to that width, keeping its aspect ratio, in the same
    swscale call.
    """
    # One swscale thread per conversion, because a box already runs one reader per camera. Measured on a 2-core
    # VM with av 18.1.0, swscale's automatic threads cost 1.5 ms of process CPU per 1080p frame, one thread 1.1 ms.
    if max_width is None or frame.width <= max_width:
        converted = frame.reformat(format="bgr24", threads=1)
    else:
        height = max(1, round(frame.height * max_width / frame.width))
        # FAST_BILINEAR samples like the detector letterbox's cv2 INTER_LINEAR resize, which it replaces.
        converted = frame.reformat(max_width, height, "bgr24", interpolation="FAST_BILINEAR", threads=1)
    # Rows of odd widths such as 1917 are padded in FFmpeg's buffer, so the array view is not contiguous.
    return np.ascontiguousarray(converted.to_ndarray())


class DamageGate:
    """Discard frames from the first decode error until the next clean key frame.

    After an error, later frames may predict from a damaged picture and show grey or smeared areas
    without any error flag, so only a key frame without errors ends the discard.
    """

    def __init__(self, camera_id: str):
        self.camera_id = camera_id
        self.errors = 0  # packets rejected plus frames discarded
        self.discarding = False
        self._discarded_in_burst = 0
        self._last_warning_s = float("-inf")

    def reject_packet(self, error: av.error.FFmpegError) -> None:
        self.errors += 1
        self._start_discarding(f"packet rejected by the decoder ({error})")

    def admit(self, frame: av.VideoFrame) -> bool:
        """Return whether the frame is clean; count and discard it otherwise."""
        if frame.is_corrupt:
            self.errors += 1
            self._discarded_in_burst += 1
            self._start_discarding("frame decoded with errors")
            return False
        if not self.discarding:
            return True
        if frame.key_frame:
            log.info("%s: clean key frame after %d discarded frame(s); frames resume", self.camera_id,
                     self._discarded_in_burst)
            self.discarding = False
            self._discarded_in_burst = 0
            return True
        self.errors += 1
        self._discarded_in_burst += 1
        return False

    def reset(self) -> None:
        """Forget an unfinished burst, for a new decoder that starts at a key frame."""
        self.discarding = False
        self._discarded_in_burst = 0

    def _start_discarding(self, reason: str) -> None:
        if self.discarding:
            return
        self.discarding = True
        now = time.monotonic()
        if now - self._last_warning_s >= DAMAGE_WARNING_INTERVAL_S:
            self._last_warning_s = now
            log.warning("%s: %s; discarding frames until the next clean key frame (decode errors so far: %d)",
                        self.camera_id, reason, self.errors)
