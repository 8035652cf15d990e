"""Association of tracks with detections by IoU, within class groups."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.core.iou import iou_matrix


@dataclass(frozen=True)
class Association:
    """Result of one matching pass: matched (track, detection) pairs and what stayed unmatched.

    Every index refers to the lists given to `associate`, not to positions inside the pass.
    """

    pairs: list[tuple[int, int]]
    unmatched_tracks: list[int]
    unmatched_detections: list[int]


def greedy_match(ious: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Match rows to columns by descending IoU, each at most once, keeping pairs at or above `min_iou`.

    NOTE: greedy, not an optimal (Hungarian) assignment, so the tracker needs no solver dependency. The two
    can differ where one box overlaps two candidates by similar IoUs, as at a crossing.
    """
    rows, cols = np.nonzero(ious >= min_iou)
    if not len(rows):
        return []
    # A stable sort on descending IoU, so equal IoUs keep row-major order and the result is deterministic.
    order = np.argsort(-ious[rows, cols], kind="stable")
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    pairs = []
    for row, col in zip(rows[order].tolist(), cols[order].tolist()):
        if row in used_rows or col in used_cols:
            continue
        used_rows.add(row)
        used_cols.add(col)
        pairs.append((row, col))
    return pairs


def associate(track_indices: list[int], predicted_xyxy: np.ndarray, track_groups: np.ndarray,
              detection_indices: list[int], boxes_xyxy: np.ndarray, detection_groups: np.ndarray,
              min_iou: float) -> Association:
    """Match the given tracks to the given detections by IoU of predicted and detected boxes.

    `predicted_xyxy` and `track_groups` are indexed by track index, `boxes_xyxy` and `detection_groups` by
    detection index. A detection only continues a track of the same class group.
    """
    if not track_indices or not detection_indices:
        return Association([], list(track_indices), list(detection_indices))
    ious = iou_matrix(predicted_xyxy[track_indices], boxes_xyxy[detection_indices])
    same_group = track_groups[track_indices][:, None] == detection_groups[detection_indices][None, :]
    local_pairs = greedy_match(np.where(same_group, ious, 0.0), min_iou)
    pairs = [(track_indices[row], detection_indices[col]) for row, col in local_pairs]
    matched_tracks = {track for track, _ in pairs}
    matched_detections = {detection for _, detection in pairs}
    return Association(
        pairs,
        [track for track in track_indices if track not in matched_tracks],
        [detection for detection in detection_indices if detection not in matched_detections],
    )
