"""The [track] table of pipeline files, and the pipeline runner that feeds the tracker frame times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config import ConfigError, PublisherConfig
from edge.config.loader import DEFAULT_PIPELINE_DIR, load_pipeline
from edge.config.pipeline import TrackStage
from edge.config.site import CameraConfig
from edge.ingest.slot import FramePacket
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.pipeline import PipelineRunner
from edge.track.tracker import Tracker
from tests.track.synthetic import CAR, to_detections

DETECT_TABLE = '[detect]\nmodel = "yolox_nano_416"\n'


def load_with_track(tmp_path: Path, track_lines: str):
    (tmp_path / "test.toml").write_text(DETECT_TABLE + "[track]\n" + track_lines + "\n", encoding="utf-8")
    return load_pipeline("test", tmp_path)


def test_pipeline_without_track_table_gets_defaults(tmp_path):
    (tmp_path / "bare.toml").write_text(DETECT_TABLE, encoding="utf-8")
    assert load_pipeline("bare", tmp_path).track == TrackStage()


@pytest.mark.parametrize("name", ["detect", "plates", "faces"])
def test_shipped_pipelines_load_track_table(name):
    track = load_pipeline(name, DEFAULT_PIPELINE_DIR).track
    assert 0 <= track.low_score < track.high_score < 1


def test_detect_pipeline_states_the_defaults():
    """pipelines/detect.toml documents every field, so its values must be the defaults it describes."""
    track = load_pipeline("detect", DEFAULT_PIPELINE_DIR).track
    assert track == TrackStage()
    text = (DEFAULT_PIPELINE_DIR / "detect.toml").read_text(encoding="utf-8")
    for field in TrackStage.model_fields:
        assert f"\n{field} = " in text


def test_valid_track_table_loads(tmp_path):
    track = load_with_track(tmp_path, "high_score = 0.6\nlow_score = 0.2\nmatch_iou = 0.25\nlow_match_iou = 0.6\n"
                                      "lost_buffer_s = 3\nmin_hits = 2")
    assert track.track == TrackStage(high_score=0.6, low_score=0.2, match_iou=0.25, low_match_iou=0.6,
                                     lost_buffer_s=3.0, min_hits=2)


# TOML line -> text the error must contain
INVALID_TRACK_LINES = {
    "high_score = 1.0": "track.high_score",
    "high_score = 0": "track.high_score",
    "low_score = -0.1": "track.low_score",
    "match_iou = 1.5": "track.match_iou",
    "low_match_iou = 0": "track.low_match_iou",
    "lost_buffer_s = 0": "track.lost_buffer_s",
    "lost_buffer_s = 61": "track.lost_buffer_s",
    "min_hits = 0": "track.min_hits",
    "min_hits = 11": "track.min_hits",
    'min_hits = "2"': "track.min_hits",
    "min_hits = 2.0": "track.min_hits",
    "max_misses = 10": "unknown field",
    "high_score = 0.4\nlow_score = 0.4": "low_score (0.4) must be below high_score (0.4)",
}


@pytest.mark.parametrize(("lines", "expected"), INVALID_TRACK_LINES.items(), ids=INVALID_TRACK_LINES.keys())
def test_invalid_track_table_rejected(tmp_path, lines, expected):
    with pytest.raises(ConfigError) as caught:
        load_with_track(tmp_path, lines)
    assert expected in str(caught.value)


def packet(time_s: float, index: int) -> FramePacket:
    return FramePacket(camera_id="cam-1", frame_bgr=np.zeros((360, 640, 3), dtype=np.uint8),
                       frame_time_utc=1_700_000_000.0 + time_s, frame_index=index)


def test_runner_passes_frame_times_to_tracker():
    """A car at 100 px/s seen again after a 1 s gap keeps its id in the published `det` messages."""
    camera = CameraConfig(id="cam-1", name="test camera", source="clip.mp4")
    analysis = CameraAnalysis(camera, Tracker(TrackStage(lost_buffer_s=0.5)))
    published = []
    runner = PipelineRunner({"cam-1": analysis}, lambda topic, body, images: published.append(body) or True,
                            PublisherConfig(send_snapshots=False), [])
    times = [0.0, 0.1, 0.2, 0.3, 1.3]
    for index, time_s in enumerate(times):
        left = 100 + 100 * time_s
        runner.on_batch([packet(time_s, index)], [to_detections([(left, 100, left + 50, 150, 0.9, CAR)])])
    track_ids = [body["detections"][0]["track_id"] for body in published]
    assert track_ids == [1] * len(times)
