"""Camera faults over the real RTSP server: codecs, sizes and pixel formats cameras send, damage and restarts.

The clips are synthetic (tests/support/media.py): every frame carries its index, so a test can check
each delivered frame against the picture it should be.
"""

from __future__ import annotations

import os
import signal
import socket
import threading

import numpy as np
import pytest

from edge.ingest.reader import CameraReader, ReaderState
from tests.conftest import PEOPLE_CLIP, RtspServer, _gstreamer_rtsp_available, free_port, wait_until
from tests.ingest.test_reader import make_reader, stop_reader
from tests.support.corrupt_proxy import CorruptingProxy
from tests.support.media import ClipSegment, encode_clip, picture_error, read_index

pytestmark = pytest.mark.rtsp

# A clean frame differs from its pattern by about 3 (chroma subsampling); smeared frames by 7 to 90.
MAX_CLEAN_PICTURE_ERROR = 5.0
H265_CAPS_WITHOUT_PARAMETER_SETS = ("application/x-rtp,media=(string)video,clock-rate=(int)90000,"
                                    "encoding-name=(string)H265,payload=(int)96")


def _mp4_h264(path) -> str:
    return f'( filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )'


def _mp4_h265(path) -> str:
    return f'( filesrc location="{path}" ! qtdemux ! h265parse config-interval=-1 ! rtph265pay name=pay0 pt=96 )'


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory):
    reason = _gstreamer_rtsp_available()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("fault-media")
    clips = {
        "h265": encode_clip(folder / "h265.mp4", [ClipSegment(320, 240, 50)], codec="libx265", gop=10),
        "wide": encode_clip(folder / "wide.mp4", [ClipSegment(1918, 1080, 4)], gop=4),
        # H.264 4:2:0 crops in steps of 2 pixels, so an odd width and height needs 4:4:4.
        "odd": encode_clip(folder / "odd.mp4", [ClipSegment(1917, 1079, 4)], pix_fmt="yuv444p", gop=4),
        "resize": encode_clip(folder / "resize.ts", [ClipSegment(320, 240, 30), ClipSegment(256, 144, 30)], gop=10),
        "h264-10bit": encode_clip(folder / "h264-10bit.mp4", [ClipSegment(320, 240, 30)], pix_fmt="yuv420p10le",
                                  gop=10),
        "h265-10bit": encode_clip(folder / "h265-10bit.mp4", [ClipSegment(320, 240, 30)], codec="libx265",
                                  pix_fmt="yuv420p10le", gop=10),
        "long": encode_clip(folder / "long.mp4", [ClipSegment(320, 240, 300)], gop=25),
    }
    # Replacing the payloader's caps leaves VPS, SPS and PPS out of the SDP, so they arrive only in-band.
    inband_h265 = (f'( filesrc location="{clips["h265"]}" ! qtdemux ! h265parse config-interval=-1 '
                   f'! rtph265pay pt=96 ! capssetter name=pay0 replace=true caps="{H265_CAPS_WITHOUT_PARAMETER_SETS}" )')
    launches = {
        "h265-inband": inband_h265,
        "wide": _mp4_h264(clips["wide"]),
        "odd": _mp4_h264(clips["odd"]),
        "resize": f'( filesrc location="{clips["resize"]}" ! tsdemux ! h264parse config-interval=-1 '
                  '! rtph264pay name=pay0 pt=96 )',
        "h264-10bit": _mp4_h264(clips["h264-10bit"]),
        "h265-10bit": _mp4_h265(clips["h265-10bit"]),
        "long": _mp4_h264(clips["long"]),
    }
    server = RtspServer({}, launches=launches)
    server.clips = clips
    yield server
    server.stop()


def describe(port: int, mount: str) -> str:
    """Return the server's DESCRIBE response (headers and SDP) for a mount."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"DESCRIBE rtsp://127.0.0.1:{port}/{mount} RTSP/1.0\r\nCSeq: 1\r\n"
                     "Accept: application/sdp\r\n\r\n".encode())
        response = b""
        while b"v=0" not in response or not response.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    return response.decode()


def assert_frames_clean(frames) -> None:
    for packet in frames:
        index = read_index(packet.frame_bgr)
        error = picture_error(packet.frame_bgr, index)
        assert error < MAX_CLEAN_PICTURE_ERROR, f"frame {packet.frame_index} (pattern {index}) differs by {error:.1f}"


def collect(url: str, count: int, timeout_s: float = 30, **camera_fields):
    reader, collector, stop = make_reader(url, max_fps=60, **camera_fields)
    reader.start()
    try:
        assert wait_until(lambda: len(collector.frames) >= count, timeout_s), reader.counters
    finally:
        stop_reader(reader, stop, collector)
    return reader, collector.frames


def test_h265_with_inband_parameter_sets(fault_server):
    sdp = describe(fault_server.port, "h265-inband")
    assert "RTSP/1.0 200 OK" in sdp
    assert "H265" in sdp
    assert "sprop-" not in sdp
    reader, frames = collect(fault_server.url("h265-inband"), 20)
    assert frames[0].frame_bgr.shape == (240, 320, 3)
    assert reader.counters.decode_errors == 0
    assert_frames_clean(frames)


@pytest.mark.parametrize("mount, width, height", [("wide", 1918, 1080), ("odd", 1917, 1079)])
def test_odd_frame_sizes(fault_server, mount, width, height):
    reader, frames = collect(fault_server.url(mount), 3)
    for packet in frames:
        assert packet.frame_bgr.shape == (height, width, 3)
        assert packet.frame_bgr.flags.c_contiguous
    assert_frames_clean(frames)


@pytest.mark.parametrize("max_frame_width, sizes", [
    (None, [(240, 320, 3), (144, 256, 3)]),
    (200, [(150, 200, 3), (112, 200, 3)]),
])
def test_resolution_change_mid_stream(fault_server, max_frame_width, sizes):
    """The stream switches from 320x240 to 256x144 at frame 30; frames and scaled frames follow it."""
    reader, collector, stop = make_reader(fault_server.url("resize"), max_fps=60, max_frame_width=max_frame_width)
    reader.start()
    assert wait_until(lambda: any(p.frame_bgr.shape == sizes[1] for p in collector.frames), 30), reader.counters
    stop_reader(reader, stop, collector)
    shapes = [packet.frame_bgr.shape for packet in collector.frames]
    first_small = shapes.index(sizes[1])
    assert first_small > 0
    assert set(shapes[:first_small]) == {sizes[0]}
    if max_frame_width is None:
        assert_frames_clean(collector.frames)
        # Frames 0 to 29 are large and 30 to 59 small; the slot may drop some but never reorders them.
        assert read_index(collector.frames[first_small - 1].frame_bgr) < 30
        assert read_index(collector.frames[first_small].frame_bgr) >= 30


@pytest.mark.parametrize("mount", ["h264-10bit", "h265-10bit"])
def test_10bit_video_becomes_8bit_bgr(fault_server, mount):
    reader, frames = collect(fault_server.url(mount), 10)
    assert frames[0].frame_bgr.dtype == np.uint8
    assert frames[0].frame_bgr.shape == (240, 320, 3)
    assert read_index(frames[0].frame_bgr) == 0
    assert_frames_clean(frames)


def test_corrupt_burst_discards_until_clean_keyframe(fault_server):
    """Flipped bytes in the RTP payloads damage pictures; none of them, nor frames predicted from them, go on."""
    proxy = CorruptingProxy(fault_server.port)
    try:
        url = f"rtsp://127.0.0.1:{proxy.port}/long"
        reader, collector, stop = make_reader(url, max_fps=60)
        reader.start()
        assert wait_until(lambda: len(collector.frames) >= 20, 30), reader.counters
        proxy.corrupting.set()
        assert wait_until(lambda: proxy.packets_corrupted >= 40, 20)
        proxy.corrupting.clear()
        frames_at_burst_end = len(collector.frames)
        assert wait_until(lambda: len(collector.frames) >= frames_at_burst_end + 30, 30), reader.counters
        stop_reader(reader, stop, collector)
    finally:
        proxy.close()
    counters = reader.counters
    assert counters.decode_errors > 0
    assert counters.reconnects == 0
    assert_frames_clean(collector.frames)
    indexes = [read_index(p.frame_bgr) for p in collector.frames]
    assert indexes == sorted(indexes)
    # The longest gap is the discarded run, which ends at a key frame (every 25th frame of the clip). Shorter
    # gaps are frames the slot dropped because the collector was slow.
    before, after = max(zip(indexes, indexes[1:]), key=lambda pair: pair[1] - pair[0])
    assert after - before > 1, "no frames were discarded"
    assert after % 25 == 0
    times = [p.frame_time_utc for p in collector.frames]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert counters.snapshot()["decode_errors"] == counters.decode_errors


def test_server_restart_on_same_port_recovers(tmp_path):
    reason = _gstreamer_rtsp_available()
    if reason:
        pytest.skip(reason)
    port = free_port()
    server = RtspServer({"people": PEOPLE_CLIP}, port=port)
    reader, collector, stop = make_reader(server.url("people"))
    try:
        reader.start()
        assert wait_until(lambda: len(collector.frames) >= 5, 30), reader.counters
        server.process.kill()
        server.process.wait()
        assert wait_until(lambda: reader.counters.reconnects >= 1, 20), reader.counters
        frames_while_down = len(collector.frames)
        server = RtspServer({"people": PEOPLE_CLIP}, port=port)
        assert wait_until(lambda: len(collector.frames) >= frames_while_down + 10, 30), reader.counters
        assert reader.state is ReaderState.STREAMING
    finally:
        stop_reader(reader, stop, collector)
        server.stop()
    times = [p.frame_time_utc for p in collector.frames]
    assert all(b > a for a, b in zip(times, times[1:]))
    indexes = [p.frame_index for p in collector.frames]
    assert indexes == sorted(set(indexes))


def test_server_paused_with_sigstop_recovers(tmp_path):
    """A frozen server keeps its TCP connection open and sends nothing; SIGCONT brings it back."""
    reason = _gstreamer_rtsp_available()
    if reason:
        pytest.skip(reason)
    server = RtspServer({"people": PEOPLE_CLIP})
    reader, collector, stop = make_reader(server.url("people"))
    try:
        reader.start()
        assert wait_until(lambda: len(collector.frames) >= 5, 30), reader.counters
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            assert wait_until(lambda: reader.counters.reconnects >= 1, 20), reader.counters
            assert "no data" in (reader.counters.last_error or "") or "timed out" in (reader.counters.last_error or "")
            frames_while_paused = len(collector.frames)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert wait_until(lambda: len(collector.frames) >= frames_while_paused + 10, 30), reader.counters
        assert reader.state is ReaderState.STREAMING
    finally:
        stop_reader(reader, stop, collector)
        server.stop()
    times = [packet.frame_time_utc for packet in collector.frames]
    assert all(later > earlier for earlier, later in zip(times, times[1:]))
