"""Turn raw detector outputs into candidate boxes in network input pixels, per output family."""

from __future__ import annotations

from dataclasses import dataclass

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


def _select(boxes_cxcywh: np.ndarray, class_scores: np.ndarray, class_mask: np.ndarray,
            score_threshold: float) -> Candidates:
    masked = np.where(class_mask, class_scores, 0.0)
    class_ids = masked.argmax(axis=1)
    scores = masked[np.arange(len(masked)), class_ids]
    keep = scores >= score_threshold
    boxes = boxes_cxcywh[keep]
    half_w, half_h = boxes[:, 2] / 2, boxes[:, 3] / 2
    boxes_xyxy = np.stack([boxes[:, 0] - half_w, boxes[:, 1] - half_h, boxes[:, 0] + half_w,
                           boxes[:, 1] + half_h], axis=1).astype(np.float32)
    return Candidates(boxes_xyxy, scores[keep].astype(np.float32), class_ids[keep].astype(np.int64))


def decode_yolox(raw: np.ndarray, grid: np.ndarray, strides: np.ndarray, class_mask: np.ndarray,
                 score_threshold: float) -> Candidates:
    """Decode one image of a raw YOLOX head output (A, 5 + classes): grid offsets, exp sizes, obj * cls."""
    if raw.shape[0] != grid.shape[0]:
        raise ValueError(f"YOLOX output has {raw.shape[0]} anchors, expected {grid.shape[0]} for this input size")
    centres = (raw[:, 0:2] + grid) * strides
    sizes = np.exp(raw[:, 2:4]) * strides
    class_scores = raw[:, 4:5] * raw[:, 5:]
    return _select(np.concatenate([centres, sizes], axis=1), class_scores, class_mask, score_threshold)


def decode_yolov8(raw: np.ndarray, class_mask: np.ndarray, score_threshold: float) -> Candidates:
    """Decode one image of a YOLOv8/YOLO11 output (4 + classes, A): centre-size boxes and class scores."""
    transposed = raw.T
    return _select(transposed[:, :4], transposed[:, 4:], class_mask, score_threshold)
