"""Detector on real images with the real YOLOX-Nano model."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config.pipeline import DetectStage
from edge.models.manifest import ModelEntry, load_manifest, resolve_file
from edge.runtime.detector import Detector, DetectorError
from edge.runtime.session import SessionError, load_model
from tests.conftest import BUS_IMAGE, MODEL_DIR, ZIDANE_IMAGE
from tests.support.yolov8_layout import build_yolov8_layout_model

# bus.jpg (810x1080): one bus and four people, hand-placed boxes in source pixels.
BUS_GROUND_TRUTH = [
    ("bus", [17, 230, 805, 745]),
    ("person", [48, 398, 245, 902]),
    ("person", [221, 405, 344, 857]),
    ("person", [670, 380, 810, 876]),
    ("person", [0, 550, 65, 873]),
]


def iou(a, b) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.fixture(scope="module")
def yolox_entry() -> ModelEntry:
    return load_manifest().model("yolox_nano_416")


@pytest.fixture(scope="module")
def detector(yolox_entry) -> Detector:
    path = resolve_file(yolox_entry, [MODEL_DIR])
    return Detector(yolox_entry, path, DetectStage(model=yolox_entry.name, score_threshold=0.25, batch_size=4),
                    ["cpu"])


def match_ground_truth(detections, ground_truth):
    """Return, per ground-truth object, the best IoU among detections of the same class."""
    names = detections.class_names()
    best = []
    for class_name, box in ground_truth:
        ious = [iou(b, box) for b, n in zip(detections.boxes_xyxy, names) if n == class_name]
        best.append(max(ious, default=0.0))
    return best


def test_bus_image_gives_bus_and_four_people(detector):
    detections = detector.detect([cv2.imread(str(BUS_IMAGE))])[0]
    names = detections.class_names()
    assert names.count("bus") == 1
    assert names.count("person") == 4
    assert len(detections) == 5
    best = match_ground_truth(detections, BUS_GROUND_TRUTH)
    assert min(best) >= 0.6, list(zip([g[0] for g in BUS_GROUND_TRUTH], best))


def test_classes_outside_pipeline_are_dropped(yolox_entry):
    path = resolve_file(yolox_entry, [MODEL_DIR])
    only_buses = Detector(yolox_entry, path, DetectStage(model=yolox_entry.name, classes=["bus"],
                                                         score_threshold=0.25), ["cpu"])
    detections = only_buses.detect([cv2.imread(str(BUS_IMAGE))])[0]
    assert detections.class_names() == ["bus"]


def test_same_boxes_alone_and_in_mixed_batch(detector):
    bus = cv2.imread(str(BUS_IMAGE))
    zidane = cv2.imread(str(ZIDANE_IMAGE))
    small = np.ascontiguousarray(zidane[100:400, 300:900])
    alone = detector.detect([bus])[0]
    batched = detector.detect([zidane, small, bus, zidane])
    assert len(batched) == 4
    mixed = batched[2]
    assert mixed.class_names() == alone.class_names()
    np.testing.assert_allclose(mixed.boxes_xyxy, alone.boxes_xyxy, atol=0.05)
    np.testing.assert_allclose(mixed.scores, alone.scores, atol=1e-4)


def test_batch_runs_in_one_inference_call(detector, monkeypatch):
    calls = []
    real_run = detector.session.run

    def counting_run(outputs, feeds):
        calls.append(next(iter(feeds.values())).shape[0])
        return real_run(outputs, feeds)

    monkeypatch.setattr(detector.session, "run", counting_run)
    frames = [cv2.imread(str(BUS_IMAGE)), cv2.imread(str(ZIDANE_IMAGE))] * 3
    detector.detect(frames)
    assert calls == [4, 2]


def test_fixed_batch_model_made_dynamic():
    loaded = load_model(MODEL_DIR / "coco" / "yolox_nano_416.onnx", ["cpu"])
    assert loaded.dynamic_batch
    assert loaded.session.get_inputs()[0].shape[0] == "batch"


def test_batch_fixed_inside_graph_falls_back_to_single(caplog, tmp_path):
    # A copy under a new path, so that an earlier load of the model in this process has not logged the warning.
    path = tmp_path / "hyperlpr3_y5fu_320x_sim.onnx"
    shutil.copy(MODEL_DIR / "plate" / "hyperlpr3_y5fu_320x_sim.onnx", path)
    caplog.set_level(logging.DEBUG, logger="edge.runtime.session")

    loaded = load_model(path, ["cpu"])
    load_model(path, ["cpu"])

    assert not loaded.dynamic_batch
    warnings = [record for record in caplog.records if "batch size is fixed inside the graph" in record.getMessage()]
    # Every inference worker loads the model, and only the first load warns.
    assert [record.levelno for record in warnings] == [logging.WARNING, logging.DEBUG]


def test_provider_fallback_logged(caplog):
    # DEBUG too, because the line is INFO only the first time this process loads the model with these providers.
    caplog.set_level(logging.DEBUG, logger="edge.runtime.session")
    loaded = load_model(MODEL_DIR / "coco" / "yolox_nano_416.onnx", ["tensorrt", "cuda", "cpu"])
    assert loaded.provider == "CPUExecutionProvider"
    lines = [r.getMessage() for r in caplog.records if "using CPUExecutionProvider" in r.getMessage()]
    assert lines == ["yolox_nano_416.onnx: using CPUExecutionProvider (requested tensorrt, cuda, cpu; "
                     "unavailable: tensorrt, cuda)"]


def test_no_available_provider_is_an_error():
    with pytest.raises(SessionError, match="none of the requested providers \\['tensorrt'\\] is available"):
        load_model(MODEL_DIR / "coco" / "yolox_nano_416.onnx", ["tensorrt"])


def test_unreadable_model_file_is_an_error(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(SessionError, match="is not a readable ONNX model"):
        load_model(bad, ["cpu"])


def test_unsupported_family_rejected(yolox_entry):
    entry = yolox_entry.model_copy(update={"family": "scrfd"})
    with pytest.raises(DetectorError, match="family 'scrfd'; detection supports yolox, yolov8"):
        Detector(entry, MODEL_DIR / "coco" / "yolox_nano_416.onnx", DetectStage(model="x"), ["cpu"])


@pytest.fixture(scope="module")
def yolov8_detector(tmp_path_factory, yolox_entry) -> Detector:
    path = build_yolov8_layout_model(MODEL_DIR / "coco" / "yolox_nano_416.onnx",
                                     tmp_path_factory.mktemp("v8") / "yolov8_layout.onnx")
    entry = yolox_entry.model_copy(update={
        "name": "yolov8_layout", "family": "yolov8", "colour_order": "rgb",
        "std": (255.0, 255.0, 255.0), "letterbox": "centre",
    })
    return Detector(entry, path, DetectStage(model=entry.name, score_threshold=0.25), ["cpu"])


def test_yolov8_layout_finds_bus_and_people(yolov8_detector):
    detections = yolov8_detector.detect([cv2.imread(str(BUS_IMAGE))])[0]
    names = detections.class_names()
    assert names.count("bus") == 1
    assert names.count("person") >= 3
    best = match_ground_truth(detections, BUS_GROUND_TRUTH[:4])
    assert min(best) >= 0.6


def test_yolov8_layout_same_alone_and_batched(yolov8_detector):
    bus = cv2.imread(str(BUS_IMAGE))
    zidane = cv2.imread(str(ZIDANE_IMAGE))
    alone = yolov8_detector.detect([zidane])[0]
    batched = yolov8_detector.detect([bus, zidane])[1]
    np.testing.assert_allclose(batched.boxes_xyxy, alone.boxes_xyxy, atol=0.05)


def test_yolov8_wrong_class_count_rejected(tmp_path, yolox_entry):
    # The raw YOLOX file read as yolov8 has 3549 rows per image instead of 84.
    entry = yolox_entry.model_copy(update={"family": "yolov8"})
    path: Path = MODEL_DIR / "coco" / "yolox_nano_416.onnx"
    wrong = Detector(entry, path, DetectStage(model=entry.name), ["cpu"])
    with pytest.raises(DetectorError, match="expected 84"):
        wrong.detect([cv2.imread(str(BUS_IMAGE))])
