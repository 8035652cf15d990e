"""IoU kernel against a plain NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from edge.core.iou import iou_matrix


def reference_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Plain NumPy broadcasting version."""
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2]).clip(0).prod(axis=1)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).clip(0).prod(axis=1)
    return intersection / np.maximum(area_a[:, None] + area_b[None, :] - intersection, 1e-9)


def random_boxes(rng, count: int) -> np.ndarray:
    corner = rng.uniform(0, 700, (count, 2))
    size = rng.uniform(5, 150, (count, 2))
    return np.concatenate([corner, corner + size], axis=1).astype(np.float32)


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 7), (30, 30), (100, 40)])
def test_kernel_matches_reference(rows, cols):
    rng = np.random.default_rng(rows * 1000 + cols)
    boxes_a, boxes_b = random_boxes(rng, rows), random_boxes(rng, cols)
    boxes_b[: min(rows, cols)] = boxes_a[: min(rows, cols)]  # some identical pairs, IoU exactly 1
    actual = iou_matrix(boxes_a, boxes_b)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, reference_iou(boxes_a, boxes_b), rtol=1e-5, atol=1e-6)


def test_degenerate_boxes_give_zero():
    boxes_a = np.array([[10, 10, 10, 30], [0, 0, 10, 10]], dtype=np.float32)  # the first has no width
    boxes_b = np.array([[10, 10, 10, 30], [20, 20, 5, 5]], dtype=np.float32)  # the second is inverted
    np.testing.assert_allclose(iou_matrix(boxes_a, boxes_b), reference_iou(boxes_a, boxes_b), atol=1e-7)
    assert not iou_matrix(boxes_a, boxes_b).any()


@pytest.mark.parametrize(("rows", "cols"), [(0, 3), (3, 0), (0, 0)])
def test_empty_side_gives_empty_matrix(rows, cols):
    result = iou_matrix(np.zeros((rows, 4), dtype=np.float32), np.zeros((cols, 4), dtype=np.float32))
    assert result.shape == (rows, cols)
