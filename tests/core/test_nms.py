"""Class-aware NMS."""

from __future__ import annotations

import numpy as np
import pytest

from edge.core.nms import nms


def boxes(*rows):
    return np.array(rows, dtype=np.float32)


def test_overlapping_same_class_keeps_highest():
    kept = nms(boxes([0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]), np.array([0.8, 0.9, 0.7]),
               np.array([0, 0, 0]), 0.5)
    assert kept.tolist() == [1, 2]


def test_overlapping_different_classes_both_kept():
    kept = nms(boxes([0, 0, 10, 10], [0, 0, 10, 10]), np.array([0.9, 0.8]), np.array([0, 2]), 0.5)
    assert sorted(kept.tolist()) == [0, 1]


def test_overlap_below_threshold_kept():
    # IoU of these two boxes is 50 / 150 = 0.33.
    kept = nms(boxes([0, 0, 10, 10], [5, 0, 15, 10]), np.array([0.9, 0.8]), np.array([0, 0]), 0.45)
    assert kept.tolist() == [0, 1]


def test_max_detections_caps_output():
    many = boxes(*[[i * 20, 0, i * 20 + 10, 10] for i in range(50)])
    kept = nms(many, np.linspace(1, 0.5, 50), np.zeros(50, dtype=np.int64), 0.5, max_detections=5)
    assert kept.tolist() == [0, 1, 2, 3, 4]


def test_empty_input():
    kept = nms(np.zeros((0, 4), dtype=np.float32), np.zeros(0), np.zeros(0, dtype=np.int64), 0.5)
    assert kept.shape == (0,)


def reference_nms(boxes_xyxy, scores, class_ids, iou_threshold, max_detections=300):
    """Plain NumPy greedy NMS: take the best remaining box, drop same-class boxes above the IoU."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    remaining = order
    while len(remaining) and len(keep) < max_detections:
        best, rest = remaining[0], remaining[1:]
        keep.append(best)
        top_left = np.maximum(boxes_xyxy[best, :2], boxes_xyxy[rest, :2])
        bottom_right = np.minimum(boxes_xyxy[best, 2:], boxes_xyxy[rest, 2:])
        intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=1)
        area_best = np.prod(np.clip(boxes_xyxy[best, 2:] - boxes_xyxy[best, :2], 0, None))
        area_rest = np.prod(boxes_xyxy[rest, 2:] - boxes_xyxy[rest, :2], axis=1)
        iou = intersection / np.maximum(area_best + area_rest - intersection, 1e-12)
        suppressed = (class_ids[rest] == class_ids[best]) & (iou > iou_threshold)
        remaining = rest[~suppressed]
    return np.array(keep, dtype=np.int64)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("classes", [1, 3])
def test_kernel_matches_numpy_reference(seed, classes):
    rng = np.random.default_rng(seed)
    count = 400
    # Clustered boxes, as a detector gives around each object, so suppression really happens.
    centres = rng.uniform(50, 600, (20, 2))[rng.integers(0, 20, count)] + rng.normal(0, 6, (count, 2))
    sizes = rng.uniform(20, 80, (count, 2))
    many = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    scores = rng.random(count).astype(np.float32)
    class_ids = rng.integers(0, classes, count).astype(np.int64)
    expected = reference_nms(many, scores, class_ids, 0.45)
    assert len(expected) < 0.75 * count, "the clustered boxes should suppress each other"
    np.testing.assert_array_equal(nms(many, scores, class_ids, 0.45), expected)
    np.testing.assert_array_equal(nms(many, scores, class_ids, 0.45, max_detections=7), expected[:7])
