"""Camera readers against real files, a real RTSP server, and cameras that stall or do not exist."""

from __future__ import annotations

import errno
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.config.site import CameraConfig, IngestConfig
from edge.ingest.reader import (WARNINGS_IN_A_ROW, CameraReader, FrameRateLimiter, ReaderState, StreamTimeoutError,
                                describe_stream_error, jittered)
from edge.ingest.redact import redact_url
from edge.ingest.slot import LatestFrameSlot
from tests.conftest import CAR_CLIP, PEOPLE_CLIP, free_port, wait_until
from tests.support.stall_proxy import SilentServer, StallProxy

FAST_INGEST = IngestConfig(open_timeout_s=3, read_timeout_s=2, backoff_initial_s=0.2, backoff_max_s=0.8)


class Collector:
    """Takes every frame out of a slot as soon as it arrives, like an idle scheduler."""

    def __init__(self, camera_id: str):
        self.ready = threading.Condition()
        self.slot = LatestFrameSlot(camera_id, self.ready)
        self.frames = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            with self.ready:
                self.ready.wait_for(lambda: self.slot.has_frame or self._stop.is_set(), 0.1)
                packet = self.slot.take()
            if packet is not None:
                self.frames.append(packet)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


def make_reader(source: str, ingest: IngestConfig = FAST_INGEST, **camera_fields):
    fields = {"id": "cam-test", "name": "test", "source": source, **camera_fields}
    camera = CameraConfig(**fields)
    collector = Collector(camera.id)
    stop = threading.Event()
    reader = CameraReader(camera, source, ingest, collector.slot, stop)
    return reader, collector, stop


def stop_reader(reader: CameraReader, stop: threading.Event, collector: Collector) -> None:
    stop.set()
    reader.join(10)
    collector.close()
    assert not reader.is_alive(), "reader thread did not stop"


def test_file_frames_are_bgr_uint8_and_counted():
    reader, collector, stop = make_reader(str(PEOPLE_CLIP), realtime=False, max_fps=60)
    reader.start()
    reader.join(60)
    collector.close()
    assert reader.state is ReaderState.FINISHED
    assert reader.counters.frames_decoded == 1394
    first = collector.frames[0].frame_bgr
    assert first.shape == (432, 768, 3)
    assert first.dtype == np.uint8
    # The floor in the first frame is brown (more red than blue), which a channel swap would reverse.
    floor = first[400:430, 100:700].reshape(-1, 3).mean(axis=0)
    assert floor[2] > floor[0] + 20
    assert len(collector.frames) + reader.slot.dropped == 1394


def test_max_fps_skips_frames():
    # The car clip runs at 12.5 fps for 30 s; a 5 fps cap keeps about 150 of its 377 frames.
    reader, collector, stop = make_reader(str(CAR_CLIP), realtime=False, max_fps=5)
    reader.start()
    reader.join(60)
    collector.close()
    kept = reader.counters.frames_decoded - reader.counters.frames_skipped
    assert reader.counters.frames_decoded == 377
    assert 148 <= kept <= 152


def test_frame_rate_limiter_keeps_even_spacing():
    limiter = FrameRateLimiter(max_fps=10)
    times = [i / 30 for i in range(90)]  # 3 s at 30 fps
    kept = [t for t in times if limiter.admit(t)]
    assert len(kept) == 30
    assert np.allclose(np.diff(kept), 0.1, atol=0.034)


def test_loop_restarts_file():
    reader, collector, stop = make_reader(str(CAR_CLIP), realtime=False, max_fps=60, loop=True)
    reader.start()
    assert wait_until(lambda: reader.counters.frames_decoded > 377 + 10, 60)
    stop_reader(reader, stop, collector)
    assert reader.counters.reconnects == 0
    assert reader.state is ReaderState.STOPPED


def test_file_that_is_not_video_fails_once(tmp_path, caplog):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is a text file, not a video\n" * 100)
    reader, collector, stop = make_reader(str(not_video))
    reader.start()
    reader.join(15)
    collector.close()
    assert reader.state is ReaderState.FAILED
    assert reader.counters.frames_decoded == 0
    assert f"cam-test: cannot read {not_video} as video" in caplog.text


def test_stream_time_follows_media_time():
    """A file decoded as fast as possible still gives the trackers the clip's own frame spacing."""
    reader, collector, stop = make_reader(str(CAR_CLIP), realtime=False, max_fps=60)
    reader.start()
    assert wait_until(lambda: len(collector.frames) >= 20, 30)
    stop_reader(reader, stop, collector)
    frames = collector.frames[:20]
    stream_steps = [b.stream_time_s - a.stream_time_s for a, b in zip(frames, frames[1:])]
    decode_span = frames[-1].frame_time_utc - frames[0].frame_time_utc
    # car-detection.mp4 runs at 12.5 fps; consecutive frames of the collector may skip some.
    assert all(step == pytest.approx(0.08, abs=0.002) or step > 0.08 for step in stream_steps)
    assert frames[-1].stream_time_s - frames[0].stream_time_s > decode_span


def test_realtime_file_is_paced_by_timestamps():
    """Without pacing the reader would finish the 30 s clip in a few seconds; with it, it is still running."""
    reader, collector, stop = make_reader(str(CAR_CLIP), realtime=True, max_fps=60)
    reader.start()
    time.sleep(2)
    decoded = reader.counters.frames_decoded
    stop_reader(reader, stop, collector)
    # 2 s of 12.5 fps media is 25 frames; a slow machine only lowers the count, never raises it.
    assert decoded <= 25 + 3


def test_redact_url_hides_credentials():
    text = "failed: 'rtsp://admin:pa55@10.1.2.3:554/live' and rtsps://u:p@host/x"
    assert redact_url(text) == "failed: 'rtsp://***@10.1.2.3:554/live' and rtsps://***@host/x"


# --- RTSP -----------------------------------------------------------------------------------------------------


@pytest.mark.rtsp
def test_rtsp_stream_decodes(rtsp_server):
    reader, collector, stop = make_reader(rtsp_server.url("people"))
    reader.start()
    assert wait_until(lambda: len(collector.frames) >= 10, 30), reader.counters
    stop_reader(reader, stop, collector)
    assert collector.frames[0].frame_bgr.shape == (432, 768, 3)
    assert reader.counters.reconnects == 0
    assert reader.counters.last_frame_age_s() < 5


@pytest.mark.rtsp
def test_rtsp_credentials_never_logged(rtsp_server, caplog):
    caplog.set_level(logging.DEBUG)
    url = rtsp_server.url("people", credentials="viewer:Wrong-Password-99")
    reader, collector, stop = make_reader(url)
    reader.start()
    assert wait_until(lambda: reader.counters.reconnects >= 1, 20)
    stop_reader(reader, stop, collector)
    assert "401" in (reader.counters.last_error or "")
    assert "check the user name and password in the camera's source" in reader.counters.last_error
    assert "[Errno" not in reader.counters.last_error
    assert "Wrong-Password-99" not in caplog.text
    assert "Wrong-Password-99" not in (reader.counters.last_error or "")
    assert "rtsp://***@127.0.0.1" in caplog.text


@pytest.mark.rtsp
def test_stalled_camera_reconnects_without_hanging(rtsp_server, caplog):
    """A camera that keeps the connection open but stops sending is noticed within read_timeout_s."""
    caplog.set_level(logging.INFO)
    proxy = StallProxy(rtsp_server.port)
    try:
        url = f"rtsp://{rtsp_server.user}@127.0.0.1:{proxy.port}/people"
        reader, collector, stop = make_reader(url)
        reader.start()
        assert wait_until(lambda: len(collector.frames) >= 5, 30)
        proxy.stall()
        assert wait_until(lambda: reader.counters.reconnects >= 1, 20), reader.counters
        assert "cam-test: read timed out: no data for" in caplog.text
        proxy.resume()
        frames_before = len(collector.frames)
        assert wait_until(lambda: len(collector.frames) > frames_before + 5, 40), reader.counters
        stop_reader(reader, stop, collector)
        assert proxy.connections >= 2
        recovered = [record for record in caplog.records if "again" in record.getMessage()]
        assert recovered, "no log line for the recovery"
        assert recovered[0].levelno == logging.INFO
        assert "cam-test: streaming rtsp://***@127.0.0.1" in recovered[0].getMessage()
        assert "reconnect(s), down" in recovered[0].getMessage()
    finally:
        proxy.close()


@pytest.mark.rtsp
def test_silent_server_times_out_on_open():
    server = SilentServer()
    try:
        reader, collector, stop = make_reader(f"rtsp://127.0.0.1:{server.port}/live")
        reader.start()
        assert wait_until(lambda: reader.counters.reconnects >= 1, 20), reader.counters
        stop_reader(reader, stop, collector)
        assert reader.counters.frames_decoded == 0
        assert "open timed out: no response within" in reader.counters.last_error
    finally:
        server.close()


def test_unserved_url_backs_off_with_cap(caplog):
    caplog.set_level(logging.WARNING)
    reader, collector, stop = make_reader(f"rtsp://127.0.0.1:{free_port()}/nobody")
    reader.start()
    assert wait_until(lambda: reader.counters.reconnects >= 4, 20), reader.counters
    stop_reader(reader, stop, collector)
    waits = [float(r.getMessage().rsplit(" in ", 1)[1].split()[0]) for r in caplog.records
             if "; reconnect " in r.getMessage()]
    # The steps double from 0.2 s to the cap of 0.8 s, and each wait is 75% to 100% of its step.
    for wait, step in zip(waits[:4], (0.2, 0.4, 0.8, 0.8)):
        assert 0.75 * step - 0.005 <= wait <= step, waits


def test_dead_camera_warnings_limited(caplog):
    caplog.set_level(logging.DEBUG)
    quick = IngestConfig(open_timeout_s=1, read_timeout_s=1, backoff_initial_s=0.05, backoff_max_s=0.05)
    reader, collector, stop = make_reader(f"rtsp://127.0.0.1:{free_port()}/nobody", ingest=quick)
    reader.start()
    assert wait_until(lambda: reader.counters.reconnects >= 12, 20), reader.counters
    stop_reader(reader, stop, collector)

    attempts = [r for r in caplog.records if "; reconnect " in r.getMessage()]
    warned = [r for r in attempts if r.levelno == logging.WARNING]
    assert len(attempts) >= 12
    assert len(warned) == WARNINGS_IN_A_ROW
    assert any("failures in a row" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_stop_interrupts_backoff_wait():
    slow = IngestConfig(open_timeout_s=1, read_timeout_s=1, backoff_initial_s=60, backoff_max_s=60)
    reader, collector, stop = make_reader(f"rtsp://127.0.0.1:{free_port()}/nobody", ingest=slow)
    reader.start()
    assert wait_until(lambda: reader.state is ReaderState.BACKOFF, 10)
    stop_reader(reader, stop, collector)
    assert reader.state is ReaderState.STOPPED


def test_resolve_source_searches_media_dirs(tmp_path):
    from edge.ingest.reader import resolve_source

    source = "one-by-one-person-detection.mp4"
    assert resolve_source(source, tmp_path, [PEOPLE_CLIP.parent]) == str(PEOPLE_CLIP.resolve())
    assert resolve_source(source, tmp_path, [PEOPLE_CLIP.parent.parent]) == str(PEOPLE_CLIP.resolve())
    assert resolve_source(source, tmp_path, [tmp_path]) is None
    assert isinstance(Path(resolve_source(source, tmp_path, [PEOPLE_CLIP.parent])), Path)


def test_looping_image_respects_max_fps(tmp_path, caplog):
    """A one-frame file in a loop must be paced like video, not reopened as fast as the disk allows."""
    import cv2

    image = tmp_path / "still.jpg"
    cv2.imwrite(str(image), np.full((120, 160, 3), 90, dtype=np.uint8))
    caplog.set_level(logging.INFO)
    reader, collector, stop = make_reader(str(image), max_fps=5, loop=True, realtime=True)
    reader.start()
    time.sleep(2)
    stop_reader(reader, stop, collector)
    offered = reader.counters.frames_decoded - reader.counters.frames_skipped
    assert 5 <= offered <= 5 * 2 + 2
    streaming_lines = [r for r in caplog.records if "streaming" in r.getMessage() and r.levelno == logging.INFO]
    assert len(streaming_lines) == 1


def looping_still_reader(tmp_path):
    """Return a reader of a one-frame image file that loops, reopening at once, with its collector and stop."""
    import cv2

    image = tmp_path / "still.jpg"
    cv2.imwrite(str(image), np.full((120, 160, 3), 90, dtype=np.uint8))
    quick = IngestConfig(open_timeout_s=1, read_timeout_s=1, backoff_initial_s=0.01, backoff_max_s=0.01)
    return make_reader(str(image), ingest=quick, loop=True)


def test_recovery_line_counts_this_outage(tmp_path, caplog):
    """The "streaming ... again" line counts the reconnects of its own outage, not all since start."""
    caplog.set_level(logging.INFO)
    reader, collector, stop = looping_still_reader(tmp_path)
    # Each entry is one open: True streams the one-frame file, False fails. Three failed opens make the first
    # outage three reconnects long, and two make the second one two reconnects long.
    script = iter([True, False, False, False, True, False, False, True])
    real_open = reader._open

    def scripted_open():
        if next(script, None) is False:
            raise OSError("scripted open failure")
        return real_open()

    reader._open = scripted_open
    reader.start()
    assert wait_until(lambda: reader.counters.reconnects >= 5 and reader._passes >= 3, 10), reader.counters
    stop_reader(reader, stop, collector)

    recovered = [r.getMessage() for r in caplog.records if "again" in r.getMessage()]
    assert len(recovered) == 2, recovered
    assert "after 3 reconnect(s)" in recovered[0]
    assert "after 2 reconnect(s)" in recovered[1]
    assert reader.counters.reconnects == 5


def test_stop_during_reconnect_logs_no_recovery(tmp_path, caplog):
    """After "received SIGTERM; stopping", a reader whose reopen then succeeded logged "streaming ... again"."""
    caplog.set_level(logging.INFO)
    reader, collector, stop = looping_still_reader(tmp_path)
    opens = []
    real_open = reader._open

    def open_then_stop():
        # The first open streams the one-frame file and the second fails, so the third is a reconnect. The stop
        # arrives while it opens.
        opens.append(time.monotonic())
        if len(opens) == 2:
            raise OSError("scripted open failure")
        if len(opens) == 3:
            stop.set()
        return real_open()

    reader._open = open_then_stop
    reader.start()
    reader.join(10)
    collector.close()

    assert not reader.is_alive(), "reader thread did not stop"
    assert len(opens) == 3
    assert reader.state is ReaderState.STOPPED
    assert reader.counters.reconnects == 1
    assert reader.counters.frames_decoded == 1
    assert not [r.getMessage() for r in caplog.records if "again" in r.getMessage()]


@pytest.mark.parametrize(("url", "expected"), [
    ("rtsp://10.0.0.1/user=admin&password=XmSecret5&channel=1&stream=0.sdp",
     "rtsp://10.0.0.1/user=admin&password=***&channel=1&stream=0.sdp"),
    ("rtsp://10.0.0.1/cam/realmonitor?channel=1&user=admin&Password=Secret7",
     "rtsp://10.0.0.1/cam/realmonitor?channel=1&user=admin&Password=***"),
    ("rtsp://10.0.0.1/live?pwd=Secret8&token=abc123", "rtsp://10.0.0.1/live?pwd=***&token=***"),
    ("'rtsp://admin:pa55@10.0.0.1/x?passwd=Secret9'", "'rtsp://***@10.0.0.1/x?passwd=***'"),
    # Words that only end in a secret's name are kept.
    ("rtsp://10.0.0.1/live?bypass=1&compass=2", "rtsp://10.0.0.1/live?bypass=1&compass=2"),
])
def test_redact_url_hides_secret_parameters(url, expected):
    assert redact_url(f"failed: {url}; retry") == f"failed: {expected}; retry"


def test_redact_url_with_at_in_password():
    assert redact_url("rtsp://admin:p@ssW0rd@10.0.0.1/live") == "rtsp://***@10.0.0.1/live"
    assert redact_url("'rtsp://admin:pa/ss@h/x'") == "'rtsp://***@h/x'"


def test_error_reason_hint_ignores_numbers_in_url():
    connection_refused = ConnectionRefusedError(111, "Connection refused", "rtsp://admin:pw@127.0.0.1:4010/channel401")
    reason = describe_stream_error(connection_refused)
    assert reason.startswith("Connection refused (rtsp://***@127.0.0.1:4010/channel401); ")
    assert "user name and password" not in reason


UNREACHABLE_HINT = "check the host and port in the camera's source, and that the camera or its RTSP server is up"


@pytest.mark.parametrize(("error", "is_network", "hinted"), [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused", "rtsp://u:p@127.0.0.1:18790/x"), True, True),
    (OSError(errno.EHOSTUNREACH, "No route to host", "rtsp://10.0.0.9/x"), True, True),
    (OSError(errno.ENETUNREACH, "Network is unreachable", "rtsp://10.0.0.9/x"), True, True),
    (TimeoutError(errno.ETIMEDOUT, "Connection timed out", "rtsp://10.0.0.9/x"), True, True),
    (StreamTimeoutError("open timed out: no response within 10.0 s (open_timeout_s=10.0)"), True, True),
    # FFmpeg reports a host name that does not resolve as an I/O error, but for a file it is a read failure.
    (OSError(errno.EIO, "Input/output error", "rtsp://no-such-camera/x"), True, True),
    (OSError(errno.EIO, "Input/output error", "/videos/gate.mp4"), False, False),
    (OSError(errno.ENOENT, "No such file or directory", "/videos/gate.mp4"), False, False),
])
def test_unreachable_camera_error_has_hint(error, is_network, hinted):
    reason = describe_stream_error(error, is_network=is_network)

    assert (UNREACHABLE_HINT in reason) is hinted
    assert "u:p@" not in reason


def test_refused_rtsp_connection_logs_hint(caplog):
    """A camera with no RTSP server behind its port logged "Connection refused" with no advice."""
    caplog.set_level(logging.WARNING)
    reader, collector, stop = make_reader(f"rtsp://admin:Secret-77@127.0.0.1:{free_port()}/x")
    reader.start()
    assert wait_until(lambda: reader.counters.reconnects >= 1, 20)
    stop_reader(reader, stop, collector)

    assert "Connection refused" in reader.counters.last_error
    assert UNREACHABLE_HINT in reader.counters.last_error
    assert UNREACHABLE_HINT in caplog.text
    assert "Secret-77" not in caplog.text
    assert "rtsp://***@127.0.0.1" in caplog.text


def test_reconnect_waits_spread():
    waits = [jittered(8.0) for _ in range(200)]
    assert all(6.0 <= wait <= 8.0 for wait in waits)
    # Cameras that fail together must not all reconnect in the same instant.
    assert max(waits) - min(waits) > 1.0
