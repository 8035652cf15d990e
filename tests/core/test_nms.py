"""Class-aware NMS."""

from __future__ import annotations

import numpy as np

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
