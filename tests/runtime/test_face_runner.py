"""The face stage of a face camera: whole frames through the real face models, faces tracked over frame time."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config.pipeline import FaceStage
from edge.config.site import CameraConfig
from edge.events.faces import FaceEventBuilder
from edge.faces.analyzer import FaceAnalyzer
from edge.ingest.slot import FramePacket
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.detector import Detections
from edge.runtime.face_runner import FaceStageRunner
from edge.watchlist.faces import FaceGallery
from tests.conftest import ASSETS
from tests.support.face_models import load_face_analyzer

FACE_PHOTO = ASSETS / "images" / "faces" / "obama" / "obama_3.jpg"
NO_DETECTIONS = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return load_face_analyzer()


def face_camera_runner(analyzer: FaceAnalyzer) -> FaceStageRunner:
    stage = FaceStage(detector="yunet_s_640", embedder="mobilefacenet_128d")
    empty_gallery = FaceGallery("mobilefacenet_128d", [], np.zeros((0, 128), np.float32), np.zeros(0, np.int64), 0.4)
    events = FaceEventBuilder(stage, lambda: empty_gallery, jpeg_quality=85)
    camera = CameraConfig(id="door", name="door", source="door.mp4", pipeline="faces", face_camera=True)
    return FaceStageRunner(stage, analyzer, analyzer, events, {"door": CameraAnalysis(camera)})


def show(runner: FaceStageRunner, frame_bgr: np.ndarray, frame_time_s: float, frame_index: int) -> None:
    packet = FramePacket("door", frame_bgr, frame_time_s, frame_index)
    runner.add_frame(packet, NO_DETECTIONS, np.zeros(0, np.int64), runner.cameras["door"])
    runner.process([packet], {})


def live_track_ids(runner: FaceStageRunner) -> list[int]:
    return [track.track_id for track in runner.face_trackers["door"].tracks]


def test_face_track_ends_after_real_gap(analyzer):
    """A face gone for longer than lost_buffer_s, on the frames' own clock, comes back as a new track."""
    face = cv2.imread(str(FACE_PHOTO))
    blank = np.full_like(face, 128)
    runner = face_camera_runner(analyzer)

    show(runner, face, 1000.0, 0)
    show(runner, face, 1000.2, 1)
    (first_id,) = live_track_ids(runner)
    show(runner, blank, 1000.4, 2)
    show(runner, blank, 1000.6, 3)
    # Two frames later, but 10 s on the camera's clock: with one nominal frame step per frame, the
    # tracker would still take the face for the same track.
    show(runner, face, 1010.6, 4)
    show(runner, face, 1010.8, 5)

    ids = live_track_ids(runner)
    assert first_id not in ids
    assert len(ids) == 1


def test_face_track_survives_short_gap(analyzer):
    face = cv2.imread(str(FACE_PHOTO))
    blank = np.full_like(face, 128)
    runner = face_camera_runner(analyzer)

    show(runner, face, 1000.0, 0)
    show(runner, face, 1000.2, 1)
    (first_id,) = live_track_ids(runner)
    show(runner, blank, 1000.4, 2)
    show(runner, face, 1000.6, 3)

    assert live_track_ids(runner) == [first_id]
