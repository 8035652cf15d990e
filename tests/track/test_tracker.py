"""Tracker on synthetic boxes: ids across occlusions, crossings, low scores, frame gaps and class flips."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config.pipeline import COCO_CLASSES, TrackStage
from edge.track.tracker import NOMINAL_FRAME_INTERVAL_S, TENTATIVE_ID, Tracker, filter_gains
from tests.track.synthetic import to_detections

CAR, TRUCK, BUS, PERSON, BICYCLE, MOTORCYCLE = (
    COCO_CLASSES.index(name) for name in ("car", "truck", "bus", "person", "bicycle", "motorcycle"))
FRAME_S = 0.1


def detections(*rows):
    """Rows of (x1, y1, x2, y2, score, class id)."""
    return to_detections(rows)


def square(left: float, top: float = 100.0, size: float = 50.0, score: float = 0.9, class_id: int = CAR):
    return (left, top, left + size, top + size, score, class_id)


def ids_of(tracker: Tracker, frame_rows: list[tuple], time_s: float | None = None) -> list[int]:
    return tracker.update(detections(*frame_rows), time_s).track_ids.tolist()


def test_moving_box_keeps_its_id():
    tracker = Tracker()
    ids = [ids_of(tracker, [square(10 + 8 * i)], i * FRAME_S)[0] for i in range(10)]
    assert ids == [1] * 10


def test_two_objects_get_two_ids():
    tracker = Tracker()
    ids = ids_of(tracker, [square(0), square(200, class_id=PERSON)])
    assert sorted(ids) == [1, 2]


# Hidden frames -> whether the object keeps id 1 when it reappears. The object moves 8 px per 0.1 s frame, so
# after 7 frames out of sight it is 56 px from its last box, further than its 50 px width: only the
# prediction finds it. A 0.55 s buffer, counted from the first frame that missed the track, keeps the track
# through 5 missed frames (reappearing when lost for 0.5 s) and ends it at the frame when it has been lost for
# 0.6 s, before that frame's detections are matched: an object that reappears then gets a new id.
OCCLUSION_CASES = {1: True, 3: True, 5: True, 6: False, 7: False, 12: False}


@pytest.mark.parametrize(("hidden_frames", "keeps_id"), OCCLUSION_CASES.items(), ids=[f"{k} hidden" for k in OCCLUSION_CASES])
def test_occlusion_within_buffer_keeps_id(hidden_frames, keeps_id):
    tracker = Tracker(TrackStage(lost_buffer_s=0.55))
    frame = 0
    ended_at = []
    for _ in range(5):
        assert ids_of(tracker, [square(10 + 8 * frame)], frame * FRAME_S) == [1]
        frame += 1
    for _ in range(hidden_frames):
        update = tracker.update(detections(), frame * FRAME_S)
        ended_at += [frame] * len(update.ended)
        frame += 1
    reappeared = []
    for _ in range(3):
        update = tracker.update(detections(square(10 + 8 * frame)), frame * FRAME_S)
        reappeared.append(int(update.track_ids[0]))
        ended_at += [frame] * len(update.ended)
        frame += 1

    if keeps_id:
        assert reappeared == [1, 1, 1]
        assert ended_at == []
    else:
        assert reappeared == [2, 2, 2]
        assert ended_at == [5 + 6]  # 0.6 s after the first missed frame


def test_one_miss_between_sparse_frames_keeps_id():
    """An overloaded box analyses a frame every 1.5 s; one missed detection must not split the track."""
    tracker = Tracker(TrackStage(lost_buffer_s=1.0))
    assert ids_of(tracker, [square(10)], 0.0) == [1]
    assert tracker.update(detections(), 1.5).ended == []
    assert ids_of(tracker, [square(12)], 3.0) == [1]


def test_two_misses_past_buffer_end_track():
    tracker = Tracker(TrackStage(lost_buffer_s=1.0))
    assert ids_of(tracker, [square(10)], 0.0) == [1]
    tracker.update(detections(), 1.5)
    tracker.update(detections(), 3.0)
    update = tracker.update(detections(square(10)), 4.5)
    assert [track.track_id for track in update.ended] == [1]
    assert update.track_ids.tolist() == [2]


def test_lost_track_counts_misses_until_it_ends():
    tracker = Tracker(TrackStage(lost_buffer_s=0.25))
    tracker.update(detections(square(0)), 0.0)
    misses = []
    for frame in range(1, 6):
        update = tracker.update(detections(), frame * FRAME_S)
        misses.append([track.misses for track in tracker.tracks])
        if update.ended:
            assert [track.track_id for track in update.ended] == [1]
    assert misses == [[1], [2], [3], [], []]


def crossing_rows(frame: int, hide_b: bool) -> list[tuple]:
    """Person A walks right and person B left along nearly the same line, crossing at frame 10.

    With `hide_b`, B is behind A while their centres are less than 100 px apart (frames 8 to 12).
    """
    left_a, left_b = 100 + 20 * frame, 500 - 20 * frame
    box_a = square(left_a, top=100, size=40, class_id=PERSON)
    box_b = square(left_b, top=110, size=40, class_id=PERSON)
    return [box_a] if hide_b and abs(left_a - left_b) < 100 else [box_a, box_b]


ALL_FRAMES = list(range(21))
WITHOUT_CROSSING = [frame for frame in ALL_FRAMES if not 8 <= frame <= 11]

# name -> (B hidden while the two are close, the frames that reach the tracker)
CROSSING_CASES = {
    "both seen": (False, ALL_FRAMES),
    "b hidden behind a": (True, ALL_FRAMES),
    "frames dropped at the crossing": (False, WITHOUT_CROSSING),
    "b hidden and frames dropped": (True, WITHOUT_CROSSING),
}


@pytest.mark.parametrize(("hide_b", "frames"), CROSSING_CASES.values(), ids=CROSSING_CASES.keys())
def test_crossing_objects_keep_their_ids(hide_b, frames):
    tracker = Tracker()
    ids_a, ids_b = [], []
    for frame in frames:
        ids = ids_of(tracker, crossing_rows(frame, hide_b), frame * FRAME_S)
        ids_a.append(ids[0])
        ids_b += ids[1:]
    assert set(ids_a) == {1}
    assert set(ids_b) == {2}
    assert len(ids_b) == sum(len(crossing_rows(frame, hide_b)) - 1 for frame in frames)


def test_low_score_continues_a_matched_track():
    tracker = Tracker()
    assert ids_of(tracker, [square(0)], 0.0) == [1]
    assert ids_of(tracker, [square(2, score=0.3)], 0.1) == [1]
    assert ids_of(tracker, [square(4, score=0.3)], 0.2) == [1]


# name -> (detection rows of each frame, expected ids per frame), with one frame every 0.1 s.
LOW_SCORE_CASES = {
    "never starts a track": (
        [[square(0, score=0.4)], [square(2, score=0.4)], [square(4, score=0.4)]],
        [[-1], [-1], [-1]]),
    "only continues, never starts": (
        [[square(0)], [square(2, score=0.3), square(300, score=0.3)]],
        [[1], [1, -1]]),
    "does not revive a lost track": (
        [[square(0)], [], [square(0, score=0.3)], [square(0)]],
        [[1], [], [-1], [1]]),
    "below low_score is ignored": (
        [[square(0)], [square(0, score=0.05)]],
        [[1], [-1]]),
    # IoU 0.39 with the track's box: enough for a high score (match_iou 0.3), not for a low one (0.5).
    "needs low_match_iou": (
        [[square(0)], [square(22, score=0.3)]],
        [[1], [-1]]),
    "high score at the same offset continues": (
        [[square(0)], [square(22)]],
        [[1], [1]]),
}


@pytest.mark.parametrize(("frames", "expected"), LOW_SCORE_CASES.values(), ids=LOW_SCORE_CASES.keys())
def test_low_score_detections(frames, expected):
    tracker = Tracker()
    assert [ids_of(tracker, rows, index * FRAME_S) for index, rows in enumerate(frames)] == expected


def test_low_score_alone_leaves_no_track():
    tracker = Tracker()
    for index in range(5):
        tracker.update(detections(square(0, score=0.4)), index * FRAME_S)
    assert tracker.tracks == []


# Gap after the last of 5 frames 0.1 s apart, in seconds. The object moves at 100 px/s with a 50 px box, so
# after a gap of 0.5 s or more its box no longer overlaps where it was last seen.
GAP_CASES = [0.2, 0.5, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("gap_s", GAP_CASES)
def test_frame_gap_matches_moving_object(gap_s):
    tracker = Tracker()
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.4 + gap_s, 0.5 + gap_s]
    ids = [ids_of(tracker, [square(100 * time_s)], time_s)[0] for time_s in times]
    assert ids == [1] * len(times)


def test_frame_gap_without_times_loses_object():
    """Control for the gap cases: without frame times the tracker assumes one frame and misses the object."""
    tracker = Tracker()
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 1.4]
    ids = [ids_of(tracker, [square(100 * time_s)])[0] for time_s in times]
    assert ids == [1, 1, 1, 1, 1, 2]


def test_velocity_is_per_analysed_frame():
    """The motion gate reads velocity_xyxy as pixels per analysed frame, whatever the frame interval."""
    tracker = Tracker()
    for index in range(6):
        tracker.update(detections(square(80 * 0.2 * index)), 0.2 * index)
    track = tracker.tracks[0]
    np.testing.assert_allclose(track.velocity_xyxy_per_s, [80, 0, 80, 0], atol=1e-3)
    np.testing.assert_allclose(track.velocity_xyxy, [16, 0, 16, 0], atol=1e-3)


def test_clock_stepping_back_counts_as_one_frame():
    tracker = Tracker()
    ids_of(tracker, [square(0)], 10.0)
    ids_of(tracker, [square(8)], 10.1)
    assert ids_of(tracker, [square(16)], 5.0) == [1]
    # The step back counts as NOMINAL_FRAME_INTERVAL_S, so 8 px over it is 80 px/s.
    speed_px_s = tracker.tracks[0].velocity_xyxy_per_s[0]
    assert abs(speed_px_s - 8 / NOMINAL_FRAME_INTERVAL_S) < 1e-3


# (first class, second class) -> whether the second detection continues the first's track
CLASS_CASES = {
    ("car", "truck"): True,
    ("truck", "bus"): True,
    ("bus", "car"): True,
    ("car", "person"): False,
    ("person", "car"): False,
    ("bicycle", "motorcycle"): False,
    ("motorcycle", "car"): False,
}


@pytest.mark.parametrize(("classes", "same_track"), CLASS_CASES.items(), ids=["-".join(pair) for pair in CLASS_CASES])
def test_class_interchange(classes, same_track):
    first, second = (COCO_CLASSES.index(name) for name in classes)
    tracker = Tracker()
    ids_of(tracker, [square(0, class_id=first)], 0.0)
    assert ids_of(tracker, [square(2, class_id=second)], 0.1) == ([1] if same_track else [2])


def test_vehicle_flipping_classes_keeps_one_track():
    tracker = Tracker()
    classes = [CAR, TRUCK, CAR, BUS, BUS, CAR, TRUCK]
    ids = [ids_of(tracker, [square(6 * i, class_id=class_id)], i * FRAME_S)[0] for i, class_id in enumerate(classes)]
    assert ids == [1] * len(classes)
    assert tracker.tracks[0].class_id == TRUCK


def test_min_hits_withholds_id_until_confirmed():
    tracker = Tracker(TrackStage(min_hits=3))
    ids = [ids_of(tracker, [square(4 * i)], i * FRAME_S)[0] for i in range(4)]
    assert ids == [-1, -1, 1, 1]


def test_tentative_track_dropped_on_first_miss():
    tracker = Tracker(TrackStage(min_hits=3))
    ids_of(tracker, [square(0)], 0.0)
    ids_of(tracker, [square(4)], 0.1)
    update = tracker.update(detections(), 0.2)
    assert update.ended == []
    assert tracker.tracks == []
    # The flicker used no id, so the next object to be confirmed gets id 1.
    ids = [ids_of(tracker, [square(300)], 0.3 + i * FRAME_S)[0] for i in range(3)]
    assert ids == [-1, -1, 1]


def test_tentative_track_listed_without_id():
    """Young tracks are in `tracks`, so the motion gate keeps frames coming until they are confirmed."""
    tracker = Tracker(TrackStage(min_hits=2))
    ids_of(tracker, [square(0)], 0.0)
    assert [track.track_id for track in tracker.tracks] == [TENTATIVE_ID]
    assert tracker.end_all() == []


def test_end_all_returns_confirmed_tracks():
    tracker = Tracker(TrackStage(min_hits=2))
    ids_of(tracker, [square(0), square(300)], 0.0)
    ids_of(tracker, [square(2)], 0.1)
    assert [track.track_id for track in tracker.end_all()] == [1]
    assert tracker.tracks == []


def test_track_ends_once_after_buffer():
    tracker = Tracker(TrackStage(lost_buffer_s=0.35))
    tracker.update(detections(square(0)), 0.0)
    ended = []
    for frame in range(1, 10):
        ended += [(frame, track.track_id) for track in tracker.update(detections(), frame * FRAME_S).ended]
    # Missed first at frame 1, so lost for 0.4 s at frame 5.
    assert ended == [(5, 1)]
    assert tracker.tracks == []


def test_lost_track_stops_growing():
    """A lost track moves with its centre velocity only, so a box that was growing keeps its last size."""
    tracker = Tracker()
    for index in range(5):
        tracker.update(detections((100, 100, 150 + 10 * index, 150 + 10 * index, 0.9, CAR)), index * FRAME_S)
    tracker.update(detections(), 0.5)
    track = tracker.tracks[0]
    predicted = track.predicted_box(1.0)
    size_now = track.box_xyxy[2:] - track.box_xyxy[:2]
    np.testing.assert_allclose(predicted[2:] - predicted[:2], size_now, atol=1e-3)


@pytest.mark.parametrize("measurements", range(2, 30))
def test_filter_gains_within_bounds(measurements):
    position_gain, velocity_gain = filter_gains(measurements)
    assert 0 < velocity_gain <= position_gain <= 1


def test_filter_gains_start_exact():
    """The second box sets position and velocity exactly: a line through two points."""
    assert filter_gains(2) == (1.0, 1.0)
