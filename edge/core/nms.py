"""Greedy class-aware non-maximum suppression."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def _nms_sorted(boxes_xyxy, class_ids, iou_threshold, max_detections):
    count = boxes_xyxy.shape[0]
    suppressed = np.zeros(count, dtype=np.bool_)
    keep = np.empty(count, dtype=np.int64)
    kept = 0
    for i in range(count):
        if suppressed[i]:
            continue
        keep[kept] = i
        kept += 1
        if kept >= max_detections:
            break
        x1, y1, x2, y2 = boxes_xyxy[i, 0], boxes_xyxy[i, 1], boxes_xyxy[i, 2], boxes_xyxy[i, 3]
        area_i = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        for j in range(i + 1, count):
            if suppressed[j] or class_ids[j] != class_ids[i]:
                continue
            inter_w = min(x2, boxes_xyxy[j, 2]) - max(x1, boxes_xyxy[j, 0])
            inter_h = min(y2, boxes_xyxy[j, 3]) - max(y1, boxes_xyxy[j, 1])
            if inter_w <= 0.0 or inter_h <= 0.0:
                continue
            intersection = inter_w * inter_h
            area_j = (boxes_xyxy[j, 2] - boxes_xyxy[j, 0]) * (boxes_xyxy[j, 3] - boxes_xyxy[j, 1])
            union = area_i + area_j - intersection
            if union > 0.0 and intersection / union > iou_threshold:
                suppressed[j] = True
    return keep[:kept]


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
        max_detections: int = 300) -> np.ndarray:
    """Return indices of kept boxes, highest score first; boxes of different classes never suppress each other."""
    order = np.argsort(-scores, kind="stable")
    kept = _nms_sorted(
        np.ascontiguousarray(boxes_xyxy[order], dtype=np.float32),
        np.ascontiguousarray(class_ids[order], dtype=np.int64),
        float(iou_threshold),
        int(max_detections),
    )
    return order[kept]
