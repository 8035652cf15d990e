"""Face gallery: enrolment storage, matching with threshold and margin, per-track hits, and privacy."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edge.config.pipeline import FaceStage
from edge.events.faces import FaceEventBuilder, FaceObservation
from edge.faces.analyzer import FaceResult
from edge.faces.quality import QualityReport
from edge.faces.types import FaceDetection
from edge.watchlist.faces import FaceGallery, FaceGalleryReloader, FacePerson, FaceWatchlist
from edge.watchlist.plates import InvalidEntryError
from edge.watchlist.store import WatchlistStore

MODEL_ID = "test-embedder:000000000000"
FRAME = np.zeros((64, 64, 3), dtype=np.uint8)


def unit(*values) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def person(person_id: int) -> FacePerson:
    return FacePerson(person_id, f"person {person_id}", "wanted", "case", "2026-01-01T00:00:00+00:00", "tester", 1)


def gallery(threshold: float = 0.5, margin: float = 0.05) -> FaceGallery:
    embeddings = np.stack([unit(1, 0, 0), unit(0.9, 0.1, 0), unit(0, 1, 0)])
    return FaceGallery(MODEL_ID, [person(1), person(2)], embeddings, np.array([1, 1, 2]), threshold, margin)


def test_match_picks_best_person():
    match = gallery().match(unit(1, 0.05, 0))
    assert match.person.id == 1
    assert match.similarity > 0.99


def test_below_threshold_no_match():
    assert gallery(threshold=0.9).match(unit(1, 1, 1)) is None


def test_small_margin_no_match():
    """A probe halfway between two persons must not produce a hit for either."""
    assert gallery(threshold=0.3, margin=0.05).match(unit(1, 1.2, 0)) is None


def test_empty_gallery_no_match():
    empty = FaceGallery(MODEL_ID, [], np.zeros((0, 3), dtype=np.float32), np.zeros(0), 0.5)
    assert empty.match(unit(1, 0, 0)) is None


@pytest.fixture
def watchlist(tmp_path) -> FaceWatchlist:
    return FaceWatchlist(WatchlistStore(tmp_path / "watchlists.sqlite"))


def test_enrol_list_remove_round_trip(watchlist):
    added = watchlist.add_person("张三", "wanted", "case 7", [(b"jpeg-1", unit(1, 0, 0)), (b"jpeg-2", unit(0, 1, 0))],
                                 MODEL_ID, actor="investigator-a")
    assert [p.name for p in watchlist.list_persons()] == ["张三"]
    assert watchlist.list_persons()[0].photos == 2
    assert watchlist.remove_person(added.id, actor="investigator-b") == 1
    assert watchlist.list_persons() == []
    assert watchlist.photos() == []


def test_audit_rows_hold_no_embedding(watchlist):
    added = watchlist.add_person("张三", "wanted", "case 7", [(b"jpeg", unit(1, 0, 0))], MODEL_ID, actor="a")
    watchlist.remove_person(added.id, actor="b")
    rows = watchlist.store.audit_log(10)
    assert [row.action for row in rows] == ["face.remove", "face.add"]
    assert [row.actor for row in rows] == ["b", "a"]
    assert "vector" not in json.dumps([row.detail for row in rows])
    assert rows[1].detail["photo_sha256"] == [hashlib.sha256(b"jpeg").hexdigest()]


def test_enrol_without_photos_rejected(watchlist):
    with pytest.raises(InvalidEntryError, match="no usable photo"):
        watchlist.add_person("张三", "wanted", "case", [], MODEL_ID, actor="a")


def test_gallery_only_uses_own_model(watchlist):
    watchlist.add_person("张三", "wanted", "case", [(b"jpeg", unit(1, 0, 0))], MODEL_ID, actor="a")
    _, other_model, missing = watchlist.load_gallery("other-model:111111111111", 0.5)
    assert len(other_model) == 0
    assert missing == 1
    _, own_model, missing = watchlist.load_gallery(MODEL_ID, 0.5)
    assert len(own_model) == 1
    assert missing == 0


def test_reloader_sees_new_person(watchlist):
    reloader = FaceGalleryReloader(watchlist, MODEL_ID, 0.5, poll_interval_s=0)
    assert len(reloader.current()) == 0
    watchlist.add_person("张三", "wanted", "case", [(b"jpeg", unit(1, 0, 0))], MODEL_ID, actor="a")
    assert reloader.refresh_if_changed() is True
    assert len(reloader.current()) == 1
    assert reloader.refresh_if_changed() is False


def observation(embedding: np.ndarray | None, frame_time_s: float = 0.0) -> FaceObservation:
    detection = FaceDetection(np.array([10, 10, 40, 40], dtype=np.float32), np.full((5, 2), 20, dtype=np.float32), 0.9)
    quality = QualityReport(embedding is not None, (), 50.0, 0.9, 100.0, 0.0, 0.0)
    result = FaceResult(0, detection, quality, np.zeros((112, 112, 3), dtype=np.uint8), embedding)
    return FaceObservation(result, FRAME, frame_time_s, np.array([0, 0, 60, 60], dtype=np.float32))


def builder(max_faces: int = 10, repeat_window_s: float = 15.0) -> FaceEventBuilder:
    stage = FaceStage(detector="d", embedder="e", max_faces_per_track=max_faces, repeat_window_s=repeat_window_s)
    fixed = gallery()
    return FaceEventBuilder(stage, lambda: fixed, jpeg_quality=80)


def test_one_hit_per_track():
    events = builder()
    first = events.on_frame("cam", {7: [observation(unit(1, 0, 0))]}, [])
    again = events.on_frame("cam", {7: [observation(unit(1, 0, 0))]}, [])
    assert [e.topic for e in first] == ["hit.face"]
    assert first[0].body["person"]["id"] == 1
    assert again == []
    assert not events.wants_faces("cam", 7, frame_index=1)
    assert events.wants_faces("cam", 7, frame_index=5)


def test_new_track_hits_again():
    events = builder()
    events.on_frame("cam", {7: [observation(unit(1, 0, 0), frame_time_s=100.0)]}, [])
    later = events.on_frame("cam", {8: [observation(unit(1, 0, 0), frame_time_s=116.0)]}, [7])
    assert [e.body["track_id"] for e in later] == [8]


def test_broken_track_gets_no_repeat_hit():
    # The tracker lost the person for a moment and started track 8 for them 2 s after the hit on track 7.
    events = builder()
    first = events.on_frame("cam", {7: [observation(unit(1, 0, 0), frame_time_s=100.0)]}, [])
    repeat = events.on_frame("cam", {8: [observation(unit(1, 0, 0), frame_time_s=102.0)]}, [7])
    other_camera = events.on_frame("cam-2", {8: [observation(unit(1, 0, 0), frame_time_s=102.0)]}, [])

    assert [e.body["track_id"] for e in first] == [7]
    assert repeat == []
    assert events.repeats_suppressed == 1
    assert [e.body["track_id"] for e in other_camera] == [8]


def test_repeat_window_restarts_while_in_view():
    events = builder()
    events.on_frame("cam", {7: [observation(unit(1, 0, 0), frame_time_s=100.0)]}, [])
    # Rechecks of the same track keep seeing the person, 10 and 20 s later.
    events.on_frame("cam", {7: [observation(unit(1, 0, 0), frame_time_s=110.0)]}, [])
    events.on_frame("cam", {7: [observation(unit(1, 0, 0), frame_time_s=120.0)]}, [])
    repeat = events.on_frame("cam", {9: [observation(unit(1, 0, 0), frame_time_s=130.0)]}, [7])
    assert repeat == []


def test_zero_repeat_window_hits_every_track():
    events = builder(repeat_window_s=0)
    events.on_frame("cam", {7: [observation(unit(1, 0, 0), frame_time_s=100.0)]}, [])
    later = events.on_frame("cam", {8: [observation(unit(1, 0, 0), frame_time_s=100.5)]}, [7])
    assert [e.body["track_id"] for e in later] == [8]


def test_unknown_face_gives_nothing():
    events = builder()
    assert events.on_frame("cam", {3: [observation(unit(0, 0, 1))]}, []) == []


def test_ended_track_forgets_embeddings():
    events = builder()
    events.on_frame("cam", {3: [observation(unit(0, 0, 1))]}, [])
    assert ("cam", 3) in events._tracks
    events.on_frame("cam", {}, [3])
    assert ("cam", 3) not in events._tracks


def test_attempts_per_track_bounded():
    events = builder(max_faces=2)
    for _ in range(2):
        events.on_frame("cam", {3: [observation(unit(0, 0, 1))]}, [])
    assert not events.wants_faces("cam", 3, frame_index=1)
    assert events.wants_faces("cam", 3, frame_index=10)


def test_rejected_face_never_matched():
    events = builder()
    assert events.on_frame("cam", {3: [observation(None)]}, []) == []


def test_person_taking_over_track_hits():
    """A tracker can hand a track from one passer-by to the next; the second enrolled person still gets a hit."""
    events = builder()
    first = events.on_frame("cam", {7: [observation(unit(1, 0, 0))]}, [])
    same_again = events.on_frame("cam", {7: [observation(unit(1, 0.02, 0))]}, [])
    second = events.on_frame("cam", {7: [observation(unit(0, 1, 0))]}, [])
    assert [e.body["person"]["id"] for e in first] == [1]
    assert same_again == []
    assert [e.body["person"]["id"] for e in second] == [2]


def test_same_name_twice_on_list_rejected(watchlist):
    watchlist.add_person("张三", "wanted", "case", [(b"jpeg", unit(1, 0, 0))], MODEL_ID, actor="a")
    with pytest.raises(InvalidEntryError, match="'张三' is already on list 'wanted' as person 1"):
        watchlist.add_person("张三", "wanted", "case", [(b"jpeg-2", unit(1, 0, 0))], MODEL_ID, actor="a")
    watchlist.add_person("张三", "missing", "case", [(b"jpeg-3", unit(1, 0, 0))], MODEL_ID, actor="a")
    assert len(watchlist.list_persons()) == 2
