"""Turn raw detector outputs into candidate boxes in network input pixels, per output family.

Both decoders are single-pass Numba kernels: per anchor they take the best allowed class, keep it when
its score reaches the threshold, and write the box straight to xyxy. They run serially (no `parallel`),
because one image is a few thousand anchors, which costs less than the start of a parallel region, and
each inference worker already decodes its own frames in its own thread. `nogil` lets those workers
decode at the same time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

YOLOX_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Candidates:
    """Boxes above the score threshold for one image, before NMS."""

    boxes_xyxy: np.ndarray  # (K, 4) float32, network input pixels
    scores: np.ndarray  # (K,) float32
    class_ids: np.ndarray  # (K,) int64


def yolox_grid(input_width: int, input_height: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the anchor grid offsets (A, 2) and strides (A, 1) of a YOLOX head for this input size."""
    grids, strides = [], []
    for stride in YOLOX_STRIDES:
        rows, cols = input_height // stride, input_width // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((rows * cols, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


@numba.njit(nogil=True, cache=True)
def _decode_yolox_kernel(raw, grid, strides, class_mask, score_threshold, boxes_out, scores_out, class_ids_out):
    kept = 0
    classes = class_mask.shape[0]
    for a in range(raw.shape[0]):
        # Score of a class = objectness x class score, and classes outside the mask score 0. Ties go to
        # the lower class id, as with numpy.argmax.
        objectness = raw[a, 4]
        class_id = 0
        score = objectness * raw[a, 5] if class_mask[0] else np.float32(0.0)
        for c in range(1, classes):
            value = objectness * raw[a, 5 + c] if class_mask[c] else np.float32(0.0)
            if value > score:
                score = value
                class_id = c
        if score < score_threshold:
            continue
        stride = strides[a, 0]
        centre_x = (raw[a, 0] + grid[a, 0]) * stride
        centre_y = (raw[a, 1] + grid[a, 1]) * stride
        half_w = np.float32(math.exp(raw[a, 2])) * stride / 2
        half_h = np.float32(math.exp(raw[a, 3])) * stride / 2
        boxes_out[kept, 0] = centre_x - half_w
        boxes_out[kept, 1] = centre_y - half_h
        boxes_out[kept, 2] = centre_x + half_w
        boxes_out[kept, 3] = centre_y + half_h
        scores_out[kept] = score
        class_ids_out[kept] = class_id
        kept += 1
    return kept


@numba.njit(nogil=True, cache=True)
def _decode_yolov8_kernel(raw, class_mask, score_threshold, boxes_out, scores_out, class_ids_out):
    kept = 0
    classes = class_mask.shape[0]
    for a in range(raw.shape[1]):
        class_id = 0
        score = raw[4, a] if class_mask[0] else np.float32(0.0)
        for c in range(1, classes):
            value = raw[4 + c, a] if class_mask[c] else np.float32(0.0)
            if value > score:
                score = value
                class_id = c
        if score < score_threshold:
            continue
        half_w = raw[2, a] / 2
        half_h = raw[3, a] / 2
        boxes_out[kept, 0] = raw[0, a] - half_w
        boxes_out[kept, 1] = raw[1, a] - half_h
        boxes_out[kept, 2] = raw[0, a] + half_w
        boxes_out[kept, 3] = raw[1, a] + half_h
        scores_out[kept] = score
        class_ids_out[kept] = class_id
        kept += 1
    return kept


def _empty_outputs(anchors: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.empty((anchors, 4), dtype=np.float32), np.empty(anchors, dtype=np.float32),
            np.empty(anchors, dtype=np.int64))


def decode_yolox(raw: np.ndarray, grid: np.ndarray, strides: np.ndarray, class_mask: np.ndarray,
                 score_threshold: float) -> Candidates:
    """Decode one image of a raw YOLOX head output (A, 5 + classes): grid offsets, exp sizes, obj * cls."""
    if raw.shape[0] != grid.shape[0]:
        raise ValueError(f"YOLOX output has {raw.shape[0]} anchors, expected {grid.shape[0]} for this input size")
    if raw.shape[1] != 5 + len(class_mask):
        raise ValueError(f"YOLOX output has {raw.shape[1]} values per anchor, expected {5 + len(class_mask)} "
                         f"(4 box values, objectness and {len(class_mask)} class scores)")
    boxes, scores, class_ids = _empty_outputs(raw.shape[0])
    kept = _decode_yolox_kernel(np.ascontiguousarray(raw, dtype=np.float32), grid, strides,
                                np.ascontiguousarray(class_mask, dtype=np.bool_), np.float32(score_threshold),
                                boxes, scores, class_ids)
    return Candidates(boxes[:kept], scores[:kept], class_ids[:kept])


def decode_yolov8(raw: np.ndarray, class_mask: np.ndarray, score_threshold: float) -> Candidates:
    """Decode one image of a YOLOv8/YOLO11 output (4 + classes, A): centre-size boxes and class scores."""
    if raw.shape[0] != 4 + len(class_mask):
        raise ValueError(f"YOLOv8 output has {raw.shape[0]} rows, expected {4 + len(class_mask)} "
                         f"(4 box values and {len(class_mask)} class scores)")
    boxes, scores, class_ids = _empty_outputs(raw.shape[1])
    kept = _decode_yolov8_kernel(np.ascontiguousarray(raw, dtype=np.float32),
                                 np.ascontiguousarray(class_mask, dtype=np.bool_), np.float32(score_threshold),
                                 boxes, scores, class_ids)
    return Candidates(boxes[:kept], scores[:kept], class_ids[:kept])
