"""Tracker: ids persist across frames, low scores only extend tracks, lost tracks end."""

from __future__ import annotations

import numpy as np

from edge.config.pipeline import COCO_CLASSES
from edge.runtime.detector import Detections
from edge.track.tracker import Tracker, iou_matrix

CAR, TRUCK, PERSON = (COCO_CLASSES.index(name) for name in ("car", "truck", "person"))


def detections(*rows) -> Detections:
    """Rows of (x1, y1, x2, y2, score, class id)."""
    array = np.array(rows, dtype=np.float32).reshape(-1, 6)
    return Detections(array[:, :4].copy(), array[:, 4].copy(), array[:, 5].astype(np.int64))


def test_moving_box_keeps_its_id():
    tracker = Tracker()
    ids = [int(tracker.update(detections((10 + 8 * i, 10, 60 + 8 * i, 60, 0.9, CAR))).track_ids[0])
           for i in range(10)]
    assert ids == [1] * 10


def test_two_objects_get_two_ids():
    tracker = Tracker()
    update = tracker.update(detections((0, 0, 50, 50, 0.9, CAR), (200, 0, 250, 50, 0.9, PERSON)))
    assert sorted(update.track_ids.tolist()) == [1, 2]


def test_low_score_extends_but_never_starts():
    tracker = Tracker(high_score=0.5)
    tracker.update(detections((0, 0, 50, 50, 0.9, CAR)))
    update = tracker.update(detections((2, 0, 52, 50, 0.3, CAR), (300, 300, 350, 350, 0.3, CAR)))
    assert update.track_ids.tolist() == [1, -1]


def test_car_truck_flip_keeps_track():
    tracker = Tracker()
    tracker.update(detections((0, 0, 100, 80, 0.9, CAR)))
    update = tracker.update(detections((2, 0, 102, 80, 0.9, TRUCK)))
    assert update.track_ids.tolist() == [1]


def test_person_never_continues_car_track():
    tracker = Tracker()
    tracker.update(detections((0, 0, 100, 80, 0.9, CAR)))
    update = tracker.update(detections((0, 0, 100, 80, 0.9, PERSON)))
    assert update.track_ids.tolist() == [2]


def test_track_ends_after_max_misses():
    tracker = Tracker(max_misses=3)
    tracker.update(detections((0, 0, 50, 50, 0.9, CAR)))
    ended_at = None
    for frame in range(1, 10):
        update = tracker.update(detections())
        if update.ended:
            ended_at = frame
            assert [t.track_id for t in update.ended] == [1]
            break
    assert ended_at == 4
    assert tracker.tracks == []


def test_iou_matrix_values():
    a = np.array([[0, 0, 10, 10]], dtype=np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]], atol=1e-6)
