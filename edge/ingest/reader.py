"""Camera reader: decode one stream with PyAV, reconnect with capped backoff, count everything."""

from __future__ import annotations

import errno
import logging
import random
import re
import threading
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import av

from edge.config.site import RTSP_SCHEMES, CameraConfig, IngestConfig
from edge.ingest.clock import StreamClock
from edge.ingest.decode import DamageGate, configure_decoder, frame_to_bgr
from edge.ingest.motion_gate import GateReason, MotionGate
from edge.ingest.redact import redact_url
from edge.ingest.slot import FramePacket, LatestFrameSlot

log = logging.getLogger(__name__)

# A dead camera retries every backoff_max_s for as long as it is down, which at the default 30 s would log
# 2,880 warnings a day. After this many failures in a row the warning repeats only once per interval.
WARNINGS_IN_A_ROW = 5
REPEAT_WARNING_INTERVAL_S = 600.0
# Each reconnect waits between (1 - this) and 1 times the backoff step; see jittered().
BACKOFF_JITTER = 0.25


def jittered(backoff_s: float) -> float:
    """Return a wait of 75% to 100% of `backoff_s`, at random.

    Cameras behind one switch or recorder fail together. Without the spread, they would all reconnect in the
    same instant when it comes back, at every step of the backoff.
    """
    return backoff_s * random.uniform(1.0 - BACKOFF_JITTER, 1.0)


class ReaderState(str, Enum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKOFF = "backoff"  # waiting before the next reconnect
    FINISHED = "finished"  # a file source reached its end without loop
    FAILED = "failed"  # a file source that is not a readable video; not retried
    STOPPED = "stopped"


class SourceError(Exception):
    """A source opened but contains no decodable video."""


class StreamTimeoutError(Exception):
    """A camera sent nothing for longer than the configured timeout."""


@dataclass
class CameraCounters:
    """Per-camera counters; written by the reader thread only, read by anyone."""

    frames_decoded: int = 0
    frames_skipped: int = 0  # decoded but above max_fps, so never offered to inference
    # Packets the decoder rejected plus frames discarded as damaged (see DamageGate); never offered either.
    decode_errors: int = 0
    frames_gated: int = 0  # within max_fps, but held back by the motion gate: no motion, no moving track
    reconnects: int = 0
    last_frame_monotonic: float | None = None
    last_error: str | None = None

    def last_frame_age_s(self, now: float | None = None) -> float | None:
        if self.last_frame_monotonic is None:
            return None
        return (now if now is not None else time.monotonic()) - self.last_frame_monotonic

    def snapshot(self) -> dict:
        data = asdict(self)
        data.pop("last_frame_monotonic")
        age = self.last_frame_age_s()
        data["last_frame_age_s"] = None if age is None else round(age, 3)
        return data


class FrameRateLimiter:
    """Keep frames at most every 1/max_fps seconds of media time."""

    def __init__(self, max_fps: float):
        self.interval_s = 1.0 / max_fps
        self.next_due_s: float | None = None

    def reset(self) -> None:
        """Start a new schedule at the next frame, for a stream whose clock starts again."""
        self.next_due_s = None

    def admit(self, media_time_s: float) -> bool:
        # A jump backwards (loop, camera clock reset) or far ahead restarts the schedule.
        if self.next_due_s is None or media_time_s < self.next_due_s - 10 * self.interval_s:
            self.next_due_s = media_time_s
        if media_time_s + 1e-6 < self.next_due_s:
            return False
        self.next_due_s = max(self.next_due_s + self.interval_s, media_time_s)
        return True


class CameraReader(threading.Thread):
    """Reads one camera into its slot until `stop` is set; `run` logs stream errors and retries instead of raising."""

    def __init__(self, camera: CameraConfig, source: str, ingest: IngestConfig, slot: LatestFrameSlot,
                 stop: threading.Event, gate: MotionGate | None = None):
        super().__init__(name=f"reader-{camera.id}", daemon=True)
        self.camera = camera
        self.source = source
        self.ingest = ingest
        self.slot = slot
        self.stop_event = stop
        self.gate = gate
        self.counters = CameraCounters()
        self.state = ReaderState.CONNECTING
        self.is_file = not camera.is_rtsp
        self._log_source = redact_url(source)
        self._limiter = FrameRateLimiter(camera.max_fps)
        # A looping file continues its media clock across passes, so the frame-rate cap and real-time pacing
        # carry on instead of restarting at every pass (a one-frame file would otherwise spin).
        self._loop_offset_s = 0.0
        self._pacing_start: tuple[float, float] | None = None  # (wall clock, media time) of the first frame
        self._passes = 0
        self._down_since: float | None = None  # monotonic time the stream was lost, until it streams again
        self._reconnects_before_outage = 0  # counters.reconnects when the current outage began
        self._failures_in_row = 0
        self._last_warning_monotonic = float("-inf")
        self._damage = DamageGate(camera.id)
        self._frame_size: tuple[int, int] | None = None
        self._last_frame_time_utc = 0.0
        self._stream_clock = StreamClock()

    def run(self) -> None:
        backoff_s = self.ingest.backoff_initial_s
        while not self.stop_event.is_set():
            self.state = ReaderState.CONNECTING
            try:
                frames_before = self.counters.frames_decoded
                self._read_until_end()
                if self.counters.frames_decoded > frames_before:
                    backoff_s = self.ingest.backoff_initial_s
                if self.stop_event.is_set():
                    break
                if self.is_file and not self.camera.loop:
                    self.state = ReaderState.FINISHED
                    log.info("%s: end of file %s", self.camera.id, self._log_source)
                    return
                if self.is_file:
                    continue  # loop: start the file again at once
                reason = "stream ended"
            except (av.error.FFmpegError, SourceError, StreamTimeoutError, OSError) as error:
                if self.stop_event.is_set():
                    break
                reason = describe_stream_error(error, is_network=not self.is_file)
                self.counters.last_error = reason
                if self.is_file and self.counters.frames_decoded == 0:
                    self.state = ReaderState.FAILED
                    log.error("%s: cannot read %s as video: %s; fix the camera's source and restart",
                              self.camera.id, self._log_source, reason)
                    return
            self.state = ReaderState.BACKOFF
            if self._down_since is None:
                self._down_since = time.monotonic()
                self._reconnects_before_outage = self.counters.reconnects
            wait_s = jittered(backoff_s)
            self._warn_reconnect(reason, wait_s)
            if self.stop_event.wait(wait_s):
                break
            self.counters.reconnects += 1
            backoff_s = min(backoff_s * 2, self.ingest.backoff_max_s)
        self.state = ReaderState.STOPPED

    def _warn_reconnect(self, reason: str, wait_s: float) -> None:
        """Log a failed attempt: every one of the first WARNINGS_IN_A_ROW, then one per REPEAT_WARNING_INTERVAL_S."""
        self._failures_in_row += 1
        now = time.monotonic()
        repeat_due = now - self._last_warning_monotonic >= REPEAT_WARNING_INTERVAL_S
        level = logging.WARNING if self._failures_in_row <= WARNINGS_IN_A_ROW or repeat_due else logging.DEBUG
        if level == logging.WARNING:
            self._last_warning_monotonic = now
        log.log(level, "%s: %s; reconnect %d in %.2f s", self.camera.id, reason, self.counters.reconnects + 1,
                wait_s)
        if self._failures_in_row == WARNINGS_IN_A_ROW:
            log.warning("%s: %d failures in a row; until the camera streams again, this warning repeats every "
                        "%.0f s (reconnects stay counted in health)", self.camera.id, WARNINGS_IN_A_ROW,
                        REPEAT_WARNING_INTERVAL_S)

    def _open(self) -> av.container.InputContainer:
        timeout = (self.ingest.open_timeout_s, self.ingest.read_timeout_s)
        if self.is_file:
            return av.open(self.source, timeout=timeout)
        # FFmpeg's own socket timeout in microseconds, a second guard beside PyAV's interrupt timeout. It
        # covers the handshake too, so it must not be shorter than the open timeout.
        socket_timeout_s = max(self.ingest.open_timeout_s, self.ingest.read_timeout_s)
        options = {"rtsp_transport": "tcp", "timeout": str(int(socket_timeout_s * 1_000_000))}
        return av.open(self.source, options=options, timeout=timeout)

    def _read_until_end(self) -> None:
        """Decode frames into the slot until the stream ends, `stop` is set, or an error is raised."""
        opening_since = time.monotonic()
        try:
            container = self._open()
        except av.error.FFmpegError as error:
            # FFmpeg reports an interrupted open as invalid data or an exit request; name the real cause.
            waited_s = time.monotonic() - opening_since
            if not self.is_file and waited_s >= self.ingest.open_timeout_s - 0.1:
                raise StreamTimeoutError(
                    f"open timed out: no response within {waited_s:.1f} s (open_timeout_s={self.ingest.open_timeout_s})"
                ) from error
            raise
        with container:
            if self.stop_event.is_set():
                # Stop was requested while the stream opened, which can take up to open_timeout_s. The reader
                # ends here, so it does not report a recovery or start decoding.
                return
            if not container.streams.video:
                raise SourceError(f"no video stream in {self._log_source}")
            stream = container.streams.video[0]
            configure_decoder(stream, self.camera.decode)
            self._damage.reset()
            if not self.is_file:
                # A new RTSP session starts its clock again, often less than a second back.
                self._limiter.reset()
                self._stream_clock.restart()
            codec = stream.codec_context
            self._failures_in_row = 0
            if self._down_since is not None:
                # An operator who saw the reconnect warnings needs to see the recovery at the same level.
                # The count is this outage's attempts; counters.reconnects keeps the total since start.
                log.info("%s: streaming %s again (%s %dx%d) after %d reconnect(s), down %.1f s", self.camera.id,
                         self._log_source, codec.name, codec.width, codec.height,
                         self.counters.reconnects - self._reconnects_before_outage,
                         time.monotonic() - self._down_since)
                self._down_since = None
            else:
                # Loop passes of a file log at debug level, so a short clip does not fill the log.
                log.log(logging.INFO if self._passes == 0 else logging.DEBUG, "%s: streaming %s (%s %dx%d)",
                        self.camera.id, self._log_source, codec.name, codec.width, codec.height)
            self._passes += 1
            self.state = ReaderState.STREAMING
            self.counters.last_error = None
            frame_interval_s = 1.0 / float(stream.average_rate) if stream.average_rate else 1.0 / self.camera.max_fps
            media_time_s = self._loop_offset_s
            for frame in self._decode_with_timeout(container, stream):
                if self.stop_event.is_set():
                    return
                self.counters.frames_decoded += 1
                self.counters.last_frame_monotonic = time.monotonic()
                admitted = self._damage.admit(frame)
                self.counters.decode_errors = self._damage.errors
                if not admitted:
                    continue
                self._note_frame_size(frame)
                if frame.time is not None:
                    media_time_s = self._loop_offset_s + float(frame.time)
                else:
                    media_time_s += frame_interval_s
                if not self._limiter.admit(media_time_s):
                    self.counters.frames_skipped += 1
                    continue
                if self.is_file and self.camera.realtime and not self._wait_for_media_time(media_time_s):
                    return
                frame_bgr = frame_to_bgr(frame, self.camera.max_frame_width)
                # The gate runs here rather than in the scheduler, so a gated frame never wakes the scheduler or
                # replaces a waiting frame. The BGR frame is at hand, and the nogil kernel lets readers measure
                # in parallel.
                if self.gate is not None and self.gate.check(frame_bgr, media_time_s) is GateReason.GATED:
                    self.counters.frames_gated += 1
                    continue
                self.slot.put(FramePacket(
                    camera_id=self.camera.id,
                    frame_bgr=frame_bgr,
                    frame_time_utc=self._next_frame_time_utc(),
                    frame_index=self.counters.frames_decoded - 1,
                    stream_time_s=self._stream_clock.time_of(media_time_s),
                ))
            if self.is_file:
                self._loop_offset_s = media_time_s + frame_interval_s

    def _next_frame_time_utc(self) -> float:
        """Return the wall-clock time for a frame, never earlier than the previous frame's, even if the clock steps back."""
        self._last_frame_time_utc = max(time.time(), self._last_frame_time_utc + 1e-6)
        return self._last_frame_time_utc

    def _note_frame_size(self, frame: av.VideoFrame) -> None:
        size = (frame.width, frame.height)
        if size != self._frame_size:
            if self._frame_size is not None:
                log.info("%s: frame size changed from %dx%d to %dx%d", self.camera.id, *self._frame_size, *size)
            self._frame_size = size

    def _wait_for_media_time(self, media_time_s: float) -> bool:
        """Sleep until the wall clock reaches the frame's media time; return False when stopped while waiting."""
        if self._pacing_start is None:
            self._pacing_start = (time.monotonic(), media_time_s)
        delay_s = self._pacing_start[0] + (media_time_s - self._pacing_start[1]) - time.monotonic()
        return delay_s <= 0 or not self.stop_event.wait(delay_s)

    def _decode_with_timeout(self, container, stream):
        """Decode frames, damaged ones included, raising StreamTimeoutError after read_timeout_s without data.

        A packet that the decoder rejects as invalid data is counted by the damage gate instead of ending the
        stream, so a burst of bad packets costs frames but not the connection.
        """
        last_packet = time.monotonic()
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as error:
                silent_s = time.monotonic() - last_packet
                if not self.is_file and silent_s >= self.ingest.read_timeout_s - 0.1:
                    raise StreamTimeoutError(
                        f"read timed out: no data for {silent_s:.1f} s (read_timeout_s={self.ingest.read_timeout_s})"
                    ) from error
                raise
            last_packet = time.monotonic()
            try:
                frames = stream.decode(packet)
            except av.error.InvalidDataError as error:
                self._damage.reject_packet(error)
                self.counters.decode_errors = self._damage.errors
                continue
            yield from frames


# OS errors of a camera that cannot be reached: refused, no route, host down, or no response in time.
UNREACHABLE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                                errno.ETIMEDOUT})
UNREACHABLE_HINT = ("; check the host and port in the camera's source, and that the camera or its RTSP server is up "
                    "and reachable from this box")


def describe_stream_error(error: Exception, is_network: bool = False) -> str:
    """Return a log-safe reason for a failed open or read, with a hint where the cause is clear.

    `is_network` is true for an RTSP source, where an I/O error may also come from a host name that did not
    resolve.
    """
    # PyAV formats FFmpeg errors as "[Errno N] text: 'url'", where N is an FFmpeg tag that means nothing to an
    # operator, so the reason is built from the text and the URL alone.
    strerror, filename = getattr(error, "strerror", None), getattr(error, "filename", None)
    text = strerror if isinstance(strerror, str) and strerror else str(error)
    # FFmpeg's TCP protocol reports a host name that getaddrinfo cannot resolve as EIO ("Input/output error").
    unreachable_errnos = UNREACHABLE_ERRNOS | {errno.EIO} if is_network else UNREACHABLE_ERRNOS
    if re.search(r"\b40[13]\b", text):
        # Only FFmpeg's text is searched, because a URL may contain 401 or 403 anywhere.
        hint = "; check the user name and password in the camera's source"
    elif isinstance(error, StreamTimeoutError) or getattr(error, "errno", None) in unreachable_errnos:
        hint = UNREACHABLE_HINT
    else:
        hint = ""
    if text is strerror and isinstance(filename, str) and filename:
        text += f" ({filename})"
    return (redact_url(text) or type(error).__name__) + hint


def resolve_source(source: str, config_dir: Path, media_dirs: list[Path]) -> str | None:
    """Return the URL or an existing file path for a camera's `source`, or None when a file source is not found.

    A relative file path is looked up beside the config file, then in each media folder and its videos/ sub-folder.
    """
    if source.lower().startswith(RTSP_SCHEMES):
        return source
    path = Path(source).expanduser()
    if path.is_absolute():
        return str(path) if path.is_file() else None
    for candidate in (config_dir / path, *(d / path for d in media_dirs), *(d / "videos" / path for d in media_dirs)):
        if candidate.is_file():
            return str(candidate.resolve())
    return None
