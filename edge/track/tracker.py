"""IoU tracker with two-stage association in the style of ByteTrack, one instance per camera.

High-score detections are matched to tracks first. Low-score detections may then keep an existing track
alive (a partly hidden car), but they never start a new one. Boxes are matched by IoU with the track's
last box moved by its recent velocity, which is enough at the 5-10 fps the appliance analyses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.config.pipeline import COCO_CLASSES
from edge.core.iou import iou_matrix
from edge.runtime.detector import Detections

# Detectors often flip one vehicle between car, truck and bus from frame to frame, so these classes may
# continue each other's tracks. Every other class only continues tracks of its own class.
INTERCHANGEABLE_CLASSES = ("car", "truck", "bus")


def default_class_groups() -> np.ndarray:
    """Return a class-id -> group-id table in which the interchangeable vehicle classes share one group."""
    groups = np.arange(len(COCO_CLASSES), dtype=np.int64)
    vehicle_group = COCO_CLASSES.index(INTERCHANGEABLE_CLASSES[0])
    for name in INTERCHANGEABLE_CLASSES:
        groups[COCO_CLASSES.index(name)] = vehicle_group
    return groups


@dataclass
class Track:
    track_id: int
    class_id: int
    box_xyxy: np.ndarray
    score: float
    hits: int = 1
    misses: int = 0
    velocity_xyxy: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.float32))

    def predicted_box(self) -> np.ndarray:
        return self.box_xyxy + self.velocity_xyxy


@dataclass(frozen=True)
class TrackUpdate:
    """Result of one frame: a track id per detection (-1 for none yet) and the tracks that ended."""

    track_ids: np.ndarray  # (K,) int64, aligned with the frame's detections
    ended: list[Track]


def _greedy_match(ious: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Match rows to columns by descending IoU; each row and column is used at most once."""
    pairs = []
    if ious.size == 0:
        return pairs
    used_rows, used_cols = set(), set()
    for flat in np.argsort(-ious, axis=None):
        row, col = divmod(int(flat), ious.shape[1])
        if ious[row, col] < min_iou:
            break
        if row in used_rows or col in used_cols:
            continue
        used_rows.add(row)
        used_cols.add(col)
        pairs.append((row, col))
    return pairs


class Tracker:
    """Assigns track ids to one camera's detections, frame after frame.

    high_score: detections at or above it can start tracks; raising it gives fewer false tracks but later starts.
    match_iou: minimum IoU with a track's predicted box; lowering it follows fast objects but swaps ids more.
    max_misses: frames a track survives without a match; raising it bridges occlusions but keeps stale tracks.
    """

    def __init__(self, high_score: float = 0.5, match_iou: float = 0.3, max_misses: int = 10,
                 class_groups: np.ndarray | None = None):
        self.high_score = high_score
        self.class_groups = default_class_groups() if class_groups is None else class_groups
        self.match_iou = match_iou
        self.max_misses = max_misses
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, detections: Detections) -> TrackUpdate:
        boxes = detections.boxes_xyxy
        track_ids = np.full(len(boxes), -1, dtype=np.int64)
        high = np.flatnonzero(detections.scores >= self.high_score)
        low = np.flatnonzero(detections.scores < self.high_score)

        unmatched_tracks = list(range(len(self.tracks)))
        for stage_indices in (high, low):
            if not len(stage_indices) or not unmatched_tracks:
                continue
            predicted = np.array([self.tracks[t].predicted_box() for t in unmatched_tracks], dtype=np.float32)
            ious = iou_matrix(predicted, boxes[stage_indices])
            # A detection only continues a track of its own class group.
            track_groups = self.class_groups[[self.tracks[t].class_id for t in unmatched_tracks]]
            detection_groups = self.class_groups[detections.class_ids[stage_indices]]
            same_group = track_groups[:, None] == detection_groups[None, :]
            matches = _greedy_match(np.where(same_group, ious, 0.0), self.match_iou)
            for row, col in matches:
                track = self.tracks[unmatched_tracks[row]]
                detection = stage_indices[col]
                self._continue(track, boxes[detection], float(detections.scores[detection]),
                               int(detections.class_ids[detection]))
                track_ids[detection] = track.track_id
            matched_rows = {row for row, _ in matches}
            unmatched_tracks = [t for i, t in enumerate(unmatched_tracks) if i not in matched_rows]

        for index in unmatched_tracks:
            self.tracks[index].misses += 1
        for detection in high:
            if track_ids[detection] == -1:
                track = Track(self._next_id, int(detections.class_ids[detection]), boxes[detection].copy(),
                              float(detections.scores[detection]))
                self._next_id += 1
                self.tracks.append(track)
                track_ids[detection] = track.track_id

        ended = [track for track in self.tracks if track.misses > self.max_misses]
        self.tracks = [track for track in self.tracks if track.misses <= self.max_misses]
        return TrackUpdate(track_ids=track_ids, ended=ended)

    @staticmethod
    def _continue(track: Track, box: np.ndarray, score: float, class_id: int) -> None:
        # Smoothed velocity: half the newest displacement plus half the previous estimate.
        steps = track.misses + 1
        track.velocity_xyxy = 0.5 * track.velocity_xyxy + 0.5 * (box - track.box_xyxy) / steps
        track.box_xyxy = box.copy()
        track.score = score
        track.class_id = class_id
        track.hits += 1
        track.misses = 0

    def end_all(self) -> list[Track]:
        """End every live track, for a camera that stops."""
        ended, self.tracks = self.tracks, []
        return ended
