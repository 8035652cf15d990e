"""The plate stage of an ordinary camera: vehicle boxes read by the real plate models, voted per track."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config.pipeline import COCO_CLASSES, PlateStage as PlateStageConfig
from edge.config.site import CameraConfig
from edge.events.plates import PlateEventBuilder
from edge.ingest.slot import FramePacket
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.detector import Detections
from edge.runtime.plate_runner import PlateStageRunner
from tests.plates.test_rendered_plates import SCENE_SIZE, TYPE_CASES, build_stage, render_scene
from tests.support import render_plate

pytestmark = pytest.mark.skipif(not render_plate.font_available(), reason=render_plate.FONT_MISSING_REASON)

CAR = COCO_CLASSES.index("car")
WHOLE_SCENE = np.array([[0, 0, SCENE_SIZE[0], SCENE_SIZE[1]]], dtype=np.float32)


def gate_runner(min_reads: int = 1) -> PlateStageRunner:
    config = PlateStageConfig(detector="hyperlpr3_y5fu_320", recognizer="wq_plate_rec_color", min_reads=min_reads,
                              min_confidence=0.0)
    events = PlateEventBuilder(config, lambda text: [], jpeg_quality=80)
    camera = CameraConfig(id="gate", name="gate", source="gate.mp4", pipeline="plates")
    return PlateStageRunner(config, build_stage(), events, {"gate": CameraAnalysis(camera)})


def show_car(runner: PlateStageRunner, frame_bgr: np.ndarray, track_id: int, frame_index: int,
             ended: list[int]) -> list:
    packet = FramePacket("gate", frame_bgr, 1000.0 + frame_index, frame_index)
    detections = Detections(WHOLE_SCENE, np.array([0.9], np.float32), np.array([CAR], np.int64))
    runner.add_frame(packet, detections, np.array([track_id], np.int64), runner.cameras["gate"])
    return runner.process([packet], {"gate": ended})


def test_tracks_without_plate_counted():
    runner = gate_runner()
    plate_scene = render_scene(TYPE_CASES[0], "clean")
    bare_scene = np.full_like(plate_scene, 90)

    sent = show_car(runner, plate_scene, track_id=1, frame_index=0, ended=[])
    show_car(runner, bare_scene, track_id=2, frame_index=1, ended=[1])
    show_car(runner, bare_scene, track_id=3, frame_index=2, ended=[2])

    assert [event.body["plate"]["text"] for event in sent if event.topic == "plate"] == [TYPE_CASES[0].text]
    # Track 1 sent its plate; track 2 was searched on a frame without a plate and ended; track 3 is live.
    assert runner.cameras["gate"].tracks_without_plate == 1
    assert runner.searched_tracks["gate"] == {3}


def test_repeated_plate_counts_as_plate():
    runner = gate_runner(min_reads=2)
    plate_scene = render_scene(TYPE_CASES[0], "clean")
    bare_scene = np.full_like(plate_scene, 90)

    show_car(runner, plate_scene, track_id=1, frame_index=0, ended=[])
    sent = show_car(runner, plate_scene, track_id=1, frame_index=1, ended=[])
    # The tracker lost the car and found it again as track 2 for one read, 2 s later. Track 2 ends before its
    # vote has min_reads, so its plate is voted at the end and held back as a repeat of track 1's.
    show_car(runner, plate_scene, track_id=2, frame_index=3, ended=[1])
    repeat = show_car(runner, bare_scene, track_id=3, frame_index=4, ended=[2])

    assert [event.body["plate"]["text"] for event in sent if event.topic == "plate"] == [TYPE_CASES[0].text]
    assert repeat == []
    assert runner.events.repeats_suppressed == 1
    assert runner.cameras["gate"].tracks_without_plate == 0
