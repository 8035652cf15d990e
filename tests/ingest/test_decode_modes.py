"""Decode modes per camera: key frames only, the frame-size cap, and their config checks."""

from __future__ import annotations

import av
import numpy as np
import pydantic
import pytest

from edge.config.site import CameraConfig
from edge.ingest.decode import frame_to_bgr
from tests.conftest import CAR_CLIP, RtspServer, _gstreamer_rtsp_available, wait_until
from tests.ingest.test_reader import make_reader, stop_reader
from tests.support.media import ClipSegment, encode_clip, read_index


def key_frame_count(path) -> int:
    with av.open(str(path)) as container:
        return sum(packet.is_keyframe for packet in container.demux(video=0) if packet.size)


def test_keyframes_mode_reads_one_frame_per_gop():
    """The car clip has 377 frames with a key frame every 60."""
    assert key_frame_count(CAR_CLIP) == 7
    reader, collector, stop = make_reader(str(CAR_CLIP), realtime=False, max_fps=60, decode="keyframes")
    reader.start()
    reader.join(60)
    collector.close()
    assert reader.counters.frames_decoded == 7
    assert len(collector.frames) + reader.slot.dropped == 7
    assert reader.counters.decode_errors == 0


def test_keyframes_mode_still_capped_by_max_fps(tmp_path):
    # 250 frames at 25 fps with a key frame every 5: 50 key frames over 10 s of media, 5 per second.
    clip = encode_clip(tmp_path / "gop5.mp4", [ClipSegment(160, 96, 250)], gop=5)
    reader, collector, stop = make_reader(str(clip), realtime=False, max_fps=1, decode="keyframes")
    reader.start()
    reader.join(60)
    collector.close()
    assert reader.counters.frames_decoded == 50
    kept = reader.counters.frames_decoded - reader.counters.frames_skipped
    assert 9 <= kept <= 11


@pytest.mark.rtsp
def test_keyframes_mode_over_rtsp(tmp_path):
    reason = _gstreamer_rtsp_available()
    if reason:
        pytest.skip(reason)
    clip = encode_clip(tmp_path / "gop10.mp4", [ClipSegment(320, 240, 100)], gop=10)
    server = RtspServer({"gop10": clip})
    try:
        reader, collector, stop = make_reader(server.url("gop10"), max_fps=60, decode="keyframes")
        reader.start()
        assert wait_until(lambda: len(collector.frames) >= 4, 30), reader.counters
        stop_reader(reader, stop, collector)
    finally:
        server.stop()
    indexes = [read_index(packet.frame_bgr) for packet in collector.frames]
    assert all(index % 10 == 0 for index in indexes), indexes
    assert reader.counters.frames_decoded == reader.counters.frames_skipped + len(collector.frames) \
        + reader.slot.dropped


def test_max_frame_width_scales_frames_keeping_aspect():
    with av.open(str(CAR_CLIP)) as container:
        frame = next(container.decode(video=0))
    full = frame_to_bgr(frame)
    scaled = frame_to_bgr(frame, max_width=416)
    assert full.shape == (432, 768, 3)
    assert scaled.shape == (234, 416, 3)
    assert scaled.flags.c_contiguous
    assert frame_to_bgr(frame, max_width=1920).shape == full.shape
    # Same picture, smaller: the mean colour of the scaled frame stays close to the full one.
    assert np.abs(scaled.reshape(-1, 3).mean(axis=0) - full.reshape(-1, 3).mean(axis=0)).max() < 3


def test_decode_config_values():
    camera = CameraConfig(id="c", name="c", source="clip.mp4")
    assert camera.decode == "all"
    assert camera.max_frame_width is None
    assert CameraConfig(id="c", name="c", source="clip.mp4", decode="keyframes").decode == "keyframes"
    with pytest.raises(pydantic.ValidationError, match="'all' or 'keyframes'"):
        CameraConfig(id="c", name="c", source="clip.mp4", decode="key")
    with pytest.raises(pydantic.ValidationError, match="greater than or equal to 64"):
        CameraConfig(id="c", name="c", source="clip.mp4", max_frame_width=10)


def test_max_frame_width_rejected_with_plate_stage(tmp_path):
    from edge.config import ConfigError
    from edge.plan import build_plan
    from tests.config.test_site_config import VALID_CAMERA, write

    with pytest.raises(ConfigError) as caught:
        build_plan(write(tmp_path, VALID_CAMERA + 'pipeline = "plates"\nmax_frame_width = 640\n'))
    assert "cameras[0].max_frame_width = 640: pipeline 'plates' reads plates or faces" in str(caught.value)
    plan = build_plan(write(tmp_path, VALID_CAMERA + "max_frame_width = 640\n"))
    assert plan.site.cameras[0].max_frame_width == 640
