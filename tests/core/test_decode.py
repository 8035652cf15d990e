"""Numba decode kernels against plain NumPy references, on random and real detector outputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config.pipeline import COCO_CLASSES
from edge.core.decode import Candidates, decode_yolov8, decode_yolox, yolox_grid
from edge.core.letterbox import InputSpec, letterbox_into
from edge.models.manifest import load_manifest, resolve_file
from edge.runtime.session import load_model
from tests.conftest import BUS_IMAGE, MODEL_DIR

CLASS_COUNT = len(COCO_CLASSES)


def reference_select(boxes_cxcywh, class_scores, class_mask, score_threshold) -> Candidates:
    """Plain NumPy: best allowed class per anchor, threshold, centre-size to xyxy."""
    masked = np.where(class_mask, class_scores, 0.0)
    class_ids = masked.argmax(axis=1)
    scores = masked[np.arange(len(masked)), class_ids]
    keep = scores >= score_threshold
    boxes = boxes_cxcywh[keep]
    half_w, half_h = boxes[:, 2] / 2, boxes[:, 3] / 2
    boxes_xyxy = np.stack([boxes[:, 0] - half_w, boxes[:, 1] - half_h, boxes[:, 0] + half_w,
                           boxes[:, 1] + half_h], axis=1).astype(np.float32)
    return Candidates(boxes_xyxy, scores[keep].astype(np.float32), class_ids[keep].astype(np.int64))


def reference_yolox(raw, grid, strides, class_mask, score_threshold) -> Candidates:
    centres = (raw[:, 0:2] + grid) * strides
    sizes = np.exp(raw[:, 2:4]) * strides
    class_scores = raw[:, 4:5] * raw[:, 5:]
    return reference_select(np.concatenate([centres, sizes], axis=1), class_scores, class_mask, score_threshold)


def reference_yolov8(raw, class_mask, score_threshold) -> Candidates:
    return reference_select(raw.T[:, :4], raw.T[:, 4:], class_mask, score_threshold)


def assert_same_candidates(actual: Candidates, expected: Candidates) -> None:
    np.testing.assert_array_equal(actual.class_ids, expected.class_ids)
    np.testing.assert_allclose(actual.scores, expected.scores, rtol=1e-6)
    np.testing.assert_allclose(actual.boxes_xyxy, expected.boxes_xyxy, rtol=1e-5, atol=1e-3)


def random_mask(rng) -> np.ndarray:
    mask = rng.random(CLASS_COUNT) < 0.3
    mask[[0, 2]] = True  # person and car, as in every shipped pipeline
    return mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_yolox_kernel_matches_reference_on_random_output(seed):
    rng = np.random.default_rng(seed)
    grid, strides = yolox_grid(416, 416)
    raw = np.empty((len(grid), 5 + CLASS_COUNT), dtype=np.float32)
    raw[:, :2] = rng.uniform(-1, 2, (len(grid), 2))
    raw[:, 2:4] = rng.uniform(-2, 3, (len(grid), 2))
    raw[:, 4:] = rng.random((len(grid), 1 + CLASS_COUNT)) ** 3
    mask = random_mask(rng)
    expected = reference_yolox(raw, grid, strides, mask, 0.25)
    assert len(expected.scores) > 10, "the random output should keep some anchors"
    assert_same_candidates(decode_yolox(raw, grid, strides, mask, 0.25), expected)


def test_yolox_ties_go_to_lower_class_id():
    grid, strides = yolox_grid(32, 32)
    raw = np.zeros((len(grid), 5 + CLASS_COUNT), dtype=np.float32)
    raw[:, 4] = 1.0
    raw[:, 5 + 7] = 0.5
    raw[:, 5 + 2] = 0.5
    mask = np.ones(CLASS_COUNT, dtype=bool)
    candidates = decode_yolox(raw, grid, strides, mask, 0.25)
    assert set(candidates.class_ids.tolist()) == {2}
    assert_same_candidates(candidates, reference_yolox(raw, grid, strides, mask, 0.25))


def test_yolox_masked_class_never_wins():
    grid, strides = yolox_grid(32, 32)
    raw = np.zeros((len(grid), 5 + CLASS_COUNT), dtype=np.float32)
    raw[:, 4] = 1.0
    raw[:, 5 + 14] = 0.9  # bird, masked out below
    raw[:, 5 + 0] = 0.3
    mask = np.zeros(CLASS_COUNT, dtype=bool)
    mask[0] = True
    candidates = decode_yolox(raw, grid, strides, mask, 0.25)
    assert set(candidates.class_ids.tolist()) == {0}
    np.testing.assert_allclose(candidates.scores, 0.3)


def test_yolox_rejects_wrong_anchor_count():
    grid, strides = yolox_grid(416, 416)
    with pytest.raises(ValueError, match="expected 3549"):
        decode_yolox(np.zeros((100, 85), dtype=np.float32), grid, strides, np.ones(80, dtype=bool), 0.25)


def test_yolox_kernel_matches_reference_on_real_output():
    entry = load_manifest().model("yolox_nano_416")
    session = load_model(resolve_file(entry, [MODEL_DIR]), ["cpu"]).session
    spec = InputSpec(416, 416, entry.colour_order, entry.mean, entry.std, entry.letterbox, entry.pad_value)
    batch = np.zeros((1, 3, 416, 416), dtype=np.float32)
    letterbox_into(cv2.imread(str(BUS_IMAGE)), spec, batch[0])
    raw = session.run(None, {session.get_inputs()[0].name: batch})[0][0]
    grid, strides = yolox_grid(416, 416)
    mask = np.array([name in ("person", "bus", "car") for name in COCO_CLASSES])
    expected = reference_yolox(raw, grid, strides, mask, 0.25)
    assert len(expected.scores) >= 5, "bus.jpg should give candidates for a bus and four people"
    assert_same_candidates(decode_yolox(raw, grid, strides, mask, 0.25), expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_yolov8_kernel_matches_reference(seed):
    rng = np.random.default_rng(seed)
    anchors = 2100
    raw = np.empty((4 + CLASS_COUNT, anchors), dtype=np.float32)
    raw[:2] = rng.uniform(0, 640, (2, anchors))
    raw[2:4] = rng.uniform(4, 300, (2, anchors))
    raw[4:] = rng.random((CLASS_COUNT, anchors)) ** 4
    mask = random_mask(rng)
    expected = reference_yolov8(raw, mask, 0.3)
    assert len(expected.scores) > 10
    assert_same_candidates(decode_yolov8(raw, mask, 0.3), expected)


def test_nothing_above_threshold_gives_empty_candidates():
    raw = np.zeros((4 + CLASS_COUNT, 50), dtype=np.float32)
    candidates = decode_yolov8(raw, np.ones(CLASS_COUNT, dtype=bool), 0.25)
    assert candidates.boxes_xyxy.shape == (0, 4)
    assert candidates.scores.shape == (0,)
