"""HitStore on a real SQLite file and media folder in tmp_path, with a fake clock."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from edge.bus.subscriber import FeedMessage
from edge.web.store import (
    DATABASE_NAME,
    AlreadyAcknowledgedError,
    MAX_ACK_NOTE_CHARS,
    MAX_FEED_TEXT_CHARS,
    ORPHAN_GRACE_S,
    ORPHAN_SWEEP_INTERVAL_S,
    SECONDS_PER_DAY,
    HitNotFoundError,
    HitQuery,
    HitStore,
    InvalidAckError,
    InvalidHitError,
    InvalidQueryError,
    MediaPathError,
    StoreClosedError,
    StoreError,
)

START_S = 1_796_000_000.0  # 2026-11-30T00:53:20Z
SNAPSHOT = b"\xff\xd8\xff\xe0snapshot"
CROP = b"\xff\xd8\xff\xe0crop"


class FakeClock:
    def __init__(self, now_s: float = START_S):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance_days(self, days: float) -> None:
        self.now_s += days * SECONDS_PER_DAY


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    hit_store = HitStore(tmp_path / "web-data", clock=clock)
    yield hit_store
    hit_store.close()


def plate_message(sequence: int, text: str = "京EA5331", topic: str = "plate", camera_id: str = "gate-north",
                  frame_time: str = "2026-12-04T21:38:13.211Z", publisher_id: str = "hub-07",
                  images: tuple[bytes, ...] = (SNAPSHOT, CROP), list_name: str = "stolen-vehicles") -> FeedMessage:
    header = {
        "schema": 1, "publisher_id": publisher_id, "sequence": sequence, "sent_at": "2026-12-04T21:38:13.468Z",
        "camera_id": camera_id, "track_id": 6, "frame_time": frame_time,
        "plate": {"text": text, "type": "standard", "colour": "yellow", "confidence": 0.9997, "reads": 3,
                  "double_row": False, "corners_xy": [[566.7, 447.0], [709.9, 448.4], [709.9, 526.6], [565.5, 524.7]]},
        "vehicle": {"class": "truck", "box_xyxy": [352.2, 97.1, 907.7, 657.3]},
    }
    if topic == "hit.plate":
        header["watchlist"] = {"entry_id": 1, "pattern": text, "list_name": list_name, "reason": "case 2026-118",
                               "max_edits": 0, "distance": 0}
    return FeedMessage(topic=topic, header=header, images=list(images))


def face_message(sequence: int, frame_time: str = "2026-12-04T22:05:19.661Z", camera_id: str = "gate-north",
                 publisher_id: str = "hub-07") -> FeedMessage:
    header = {
        "schema": 1, "publisher_id": publisher_id, "sequence": sequence, "sent_at": "2026-12-04T22:05:20.072Z",
        "camera_id": camera_id, "track_id": 1, "frame_time": frame_time,
        "person": {"id": 1, "name": "Barack Obama", "list_name": "wanted", "reason": "case 2026-207"},
        "similarity": 0.7429, "margin": 1.0, "model_id": "mobilefacenet_128d:0c9ad2a83969",
        "face": {"box_xyxy": [615.8, 80.0, 701.8, 189.5], "detector_score": 0.9315},
        "person_box_xyxy": [484.8, 87.8, 799.0, 704.7],
    }
    return FeedMessage(topic="hit.face", header=header, images=[SNAPSHOT, CROP])


def health_header(uptime_s: float, cameras: list[dict], publisher_id: str = "hub-07", sequence: int = 50) -> dict:
    return {"schema": 1, "publisher_id": publisher_id, "sequence": sequence, "sent_at": "2026-12-04T21:38:14.734Z",
            "uptime_s": uptime_s, "cameras": cameras}


def camera(camera_id: str, frames_decoded: int, state: str = "streaming") -> dict:
    return {"camera_id": camera_id, "state": state, "frames_decoded": frames_decoded, "frames_skipped": 0,
            "reconnects": 2, "last_error": None, "last_frame_age_s": 0.013, "frames_dropped": 1}


# Adding and reading hits


def test_add_plate_fields(store):
    hit = store.add(plate_message(37))
    assert hit is not None
    assert hit.publisher_id == "hub-07"
    assert hit.sequence == 37
    assert hit.topic == "plate"
    assert hit.camera_id == "gate-north"
    assert hit.frame_time == "2026-12-04T21:38:13.211Z"
    assert hit.received_at == "2026-11-30T00:53:20.000Z"
    assert hit.track_id == 6
    assert hit.plate_text == "京EA5331"
    assert hit.plate_type == "standard"
    assert hit.plate_colour == "yellow"
    assert hit.confidence == 0.9997
    assert hit.box_xyxy == [352.2, 97.1, 907.7, 657.3]
    assert hit.person_name is None
    assert hit.list_name is None
    assert hit.header["plate"]["corners_xy"][0] == [566.7, 447.0]
    assert store.get(hit.id) == hit


def test_add_plate_hit_fields(store):
    hit = store.add(plate_message(5, topic="hit.plate"))
    assert hit.topic == "hit.plate"
    assert hit.list_name == "stolen-vehicles"
    assert hit.entry_pattern == "京EA5331"
    assert hit.reason == "case 2026-118"
    assert store.get(hit.id) == hit


def test_add_face_hit_fields(store):
    hit = store.add(face_message(2))
    assert hit.topic == "hit.face"
    assert hit.person_name == "Barack Obama"
    assert hit.similarity == 0.7429
    assert hit.list_name == "wanted"
    assert hit.reason == "case 2026-207"
    assert hit.box_xyxy == [615.8, 80.0, 701.8, 189.5]
    assert hit.plate_text is None
    assert hit.entry_pattern is None
    assert store.get(hit.id) == hit


def test_add_later_hit_topic(store):
    message = FeedMessage("hit.vehicle", {"schema": 1, "publisher_id": "hub-07", "sequence": 9, "camera_id": "c1",
                                          "frame_time": "2026-12-04T21:38:13.211Z", "future_field": [1, 2]}, [SNAPSHOT])
    hit = store.add(message)
    assert hit.topic == "hit.vehicle"
    assert hit.crop_path is None
    assert hit.header["future_field"] == [1, 2]


def test_add_ignores_other_topics(store):
    assert store.add(FeedMessage("det", {"schema": 1, "publisher_id": "hub-07", "sequence": 1}, [])) is None
    assert store.add(FeedMessage("health", health_header(5.0, []), [])) is None
    assert store.search(HitQuery()).total == 0
    assert store.last_sequence("hub-07") is None


def test_add_deduplicates_by_publisher_and_sequence(store):
    first = store.add(plate_message(37))
    assert store.add(plate_message(37)) is None
    assert store.add(plate_message(37, topic="hit.plate")) is None
    other_publisher = store.add(plate_message(37, publisher_id="hub-08"))
    assert other_publisher is not None
    assert other_publisher.id != first.id
    assert store.search(HitQuery()).total == 2


def test_last_sequence_per_publisher(store):
    assert store.last_sequence("hub-07") is None
    store.add(plate_message(40))
    store.add(plate_message(12))
    store.add(plate_message(3, publisher_id="hub-08"))
    assert store.last_sequence("hub-07") == 40
    assert store.last_sequence("hub-08") == 3


def test_new_run_stores_reused_sequences(store):
    store.add(plate_message(40))
    assert store.start_new_run("hub-07") == 2
    assert store.last_sequence("hub-07") is None
    again = store.add(plate_message(40, text="苏B12345"))
    assert again is not None
    assert store.last_sequence("hub-07") == 40
    assert store.search(HitQuery()).total == 2
    assert store.add(plate_message(40, text="苏B12345")) is None


def test_store_survives_reopen(tmp_path, clock):
    first = HitStore(tmp_path, clock=clock)
    hit = first.add(plate_message(37))
    first.close()
    second = HitStore(tmp_path, clock=clock)
    try:
        assert second.get(hit.id) == hit
        assert second.last_sequence("hub-07") == 37
        assert second.add(plate_message(37)) is None
    finally:
        second.close()


def test_database_is_in_wal_mode(store, tmp_path):
    connection = sqlite3.connect(tmp_path / "web-data" / DATABASE_NAME)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    finally:
        connection.close()


@pytest.mark.parametrize("header_change, error", [
    ({"schema": 2}, "schema 2"),
    ({"publisher_id": ""}, "without a publisher_id"),
    ({"sequence": "7"}, "invalid sequence '7'"),
    ({"sequence": True}, "invalid sequence True"),
    ({"camera_id": None}, "has no camera_id"),
])
def test_add_rejects_invalid_header(store, header_change, error):
    message = plate_message(7)
    message.header.update(header_change)
    with pytest.raises(InvalidHitError, match=error):
        store.add(message)
    assert store.search(HitQuery()).total == 0


def test_frame_time_falls_back_to_sent_at(store):
    message = plate_message(7)
    message.header["frame_time"] = "yesterday"
    assert store.add(message).frame_time == "2026-12-04T21:38:13.468Z"


# Files


def test_images_written_as_files(store, tmp_path):
    hit = store.add(plate_message(37))
    assert re.fullmatch(r"media/2026-11-30/hub-07-[0-9a-f]{8}-r1-37-snapshot\.jpg", hit.snapshot_path)
    assert re.fullmatch(r"media/2026-11-30/hub-07-[0-9a-f]{8}-r1-37-crop\.jpg", hit.crop_path)
    assert store.media_path(hit.snapshot_path).read_bytes() == SNAPSHOT
    assert store.media_path(hit.crop_path).read_bytes() == CROP
    assert store.media_path(hit.snapshot_path).parent == tmp_path / "web-data" / "media" / "2026-11-30"
    assert store.usage().media_bytes == len(SNAPSHOT) + len(CROP)


def test_message_without_images(store):
    hit = store.add(plate_message(37, images=()))
    assert hit.snapshot_path is None
    assert hit.crop_path is None


def test_image_that_is_not_jpeg_is_skipped(store):
    hit = store.add(plate_message(37, images=(b"<svg onload=alert(1)>", CROP)))
    assert hit.snapshot_path is None
    assert store.media_path(hit.crop_path).read_bytes() == CROP


def test_unsafe_publisher_id_gives_safe_file_name(store, tmp_path):
    hit = store.add(plate_message(1, publisher_id="../../etc/passwd"))
    path = store.media_path(hit.snapshot_path)
    assert path.parent == (tmp_path / "web-data" / "media" / "2026-11-30").resolve()
    assert "/" not in path.name
    assert path.name.startswith("etc_passwd-")
    other = store.add(plate_message(1, publisher_id="..//etc/passwd"))
    assert other.snapshot_path != hit.snapshot_path


@pytest.mark.parametrize("relative", [
    "",
    "/etc/passwd",
    "hits.sqlite3",
    "media",
    "media/../hits.sqlite3",
    "media/2026-11-30/../../hits.sqlite3",
    "../outside.jpg",
    "media/x\x00.jpg",
])
def test_media_path_rejects_escape(store, relative):
    with pytest.raises(MediaPathError):
        store.media_path(relative)


def test_media_path_rejects_symlink_out(store, tmp_path):
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    (tmp_path / "web-data" / "media" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(MediaPathError):
        store.media_path("media/link.jpg")


# Search


@pytest.fixture
def search_store(store, clock):
    """Six hits on two cameras and three topics, one minute apart from 08:00 UTC."""
    messages = [
        plate_message(1, "京EA5331", camera_id="gate-north", frame_time="2026-12-04T08:00:00.000Z"),
        plate_message(2, "京EA5331", topic="hit.plate", camera_id="gate-north", frame_time="2026-12-04T08:00:00.000Z"),
        plate_message(3, "京EB1234", camera_id="gate-south", frame_time="2026-12-04T08:01:00.000Z"),
        plate_message(4, "苏E12345", topic="hit.plate", camera_id="gate-south", frame_time="2026-12-04T08:02:00.000Z",
                      list_name="case-list"),
        face_message(5, camera_id="gate-north", frame_time="2026-12-04T08:03:00.000Z"),
        plate_message(6, "京A_1%2", camera_id="gate-north", frame_time="2026-12-04T08:04:00.000Z"),
    ]
    for message in messages:
        assert store.add(message) is not None
    return store


def sequences(store, query: HitQuery) -> list[int]:
    return [hit.sequence for hit in store.search(query).hits]


@pytest.mark.parametrize("query, expected", [
    (HitQuery(), [6, 5, 4, 3, 2, 1]),
    (HitQuery(plate="京EA5331"), [2, 1]),
    (HitQuery(plate="京EA533"), []),
    (HitQuery(plate="京ea 5331"), [2, 1]),
    (HitQuery(plate="京E·A5331"), [2, 1]),
    (HitQuery(plate="京E-A5331"), [2, 1]),
    (HitQuery(plate="京ＥＡ５３３１"), [2, 1]),
    (HitQuery(plate="京e", plate_mode="prefix"), [3, 2, 1]),
    (HitQuery(plate="京E·", plate_mode="prefix"), [3, 2, 1]),
    (HitQuery(plate="E", plate_mode="prefix"), []),
    (HitQuery(plate="*1234*", plate_mode="wildcard"), [4, 3]),
    (HitQuery(plate="京E?5331", plate_mode="wildcard"), [2, 1]),
    (HitQuery(plate="??12345", plate_mode="wildcard"), [4]),
    (HitQuery(plate="京**", plate_mode="wildcard"), [6, 3, 2, 1]),
    (HitQuery(plate="京＊", plate_mode="wildcard"), [6, 3, 2, 1]),
    (HitQuery(plate="*", plate_mode="wildcard"), [6, 4, 3, 2, 1]),
    (HitQuery(plate="京E*", plate_mode="exact"), []),
    (HitQuery(plate="京E*", plate_mode="prefix"), []),
    (HitQuery(plate="京E[AB]*", plate_mode="wildcard"), []),
    (HitQuery(plate="京A_1%2"), [6]),
    (HitQuery(plate="京A_", plate_mode="prefix"), [6]),
    (HitQuery(plate="京A%", plate_mode="prefix"), []),
    (HitQuery(plate="京A?1%2", plate_mode="wildcard"), [6]),
    (HitQuery(plate="' OR 1=1 --"), []),
    (HitQuery(plate="  "), [6, 5, 4, 3, 2, 1]),
    (HitQuery(camera_id="gate-south"), [4, 3]),
    (HitQuery(camera_id="gate"), []),
    (HitQuery(topic="plate"), [6, 3, 1]),
    (HitQuery(topic="hit.plate"), [4, 2]),
    (HitQuery(topic="hit.face"), [5]),
    (HitQuery(topic="hits"), [5, 4, 2]),
    (HitQuery(list_name="stolen-vehicles"), [2]),
    (HitQuery(list_name="wanted"), [5]),
    (HitQuery(since=datetime(2026, 12, 4, 8, 1, tzinfo=timezone.utc)), [6, 5, 4, 3]),
    (HitQuery(until=datetime(2026, 12, 4, 8, 1, tzinfo=timezone.utc)), [2, 1]),
    (HitQuery(since=datetime(2026, 12, 4, 16, 1, tzinfo=timezone(timedelta(hours=8))),
              until=datetime(2026, 12, 4, 16, 3, tzinfo=timezone(timedelta(hours=8)))), [4, 3]),
    (HitQuery(plate="京", plate_mode="prefix", camera_id="gate-north", topic="plate"), [6, 1]),
], ids=lambda value: repr(value) if isinstance(value, HitQuery) else None)
def test_search_filters(search_store, query, expected):
    assert sequences(search_store, query) == expected


@pytest.mark.parametrize("typed, expected", [
    ("GATE-SOUTH", [4, 3]),
    ("South Gate", [4, 3]),
    ("south gate", [4, 3]),
    ("北门", [6, 5, 2, 1]),
    # Part of a name or of an id matches too.
    ("South", [4, 3]),
    ("北", [6, 5, 2, 1]),
    ("-nor", [6, 5, 2, 1]),
    ("gate", [6, 5, 4, 3, 2, 1]),
    ("west", []),
])
def test_search_camera_by_name_or_id(search_store, typed, expected):
    search_store.update_health(health_header(10.0, [{**camera("gate-south", 100), "camera_name": "South Gate"},
                                                    {**camera("gate-north", 100), "camera_name": "北门"}]))

    assert sequences(search_store, HitQuery(camera_id=typed)) == expected


@pytest.mark.parametrize("arguments, error", [
    ({"plate_mode": "regex"}, "invalid plate_mode 'regex'"),
    ({"topic": "det"}, "invalid topic 'det'"),
    ({"since": datetime(2026, 12, 4)}, "timezone-aware"),
    ({"until": "2026-12-04"}, "timezone-aware"),
])
def test_query_rejects_invalid_filter(arguments, error):
    with pytest.raises(InvalidQueryError, match=error):
        HitQuery(**arguments)


def test_search_pages(store):
    for sequence in range(1, 8):
        store.add(plate_message(sequence, frame_time=f"2026-12-04T08:0{sequence}:00.000Z"))
    pages = [store.search(HitQuery(), page=page, page_size=3) for page in (1, 2, 3, 4)]
    assert [hit.sequence for hit in pages[0].hits] == [7, 6, 5]
    assert [hit.sequence for hit in pages[1].hits] == [4, 3, 2]
    assert [hit.sequence for hit in pages[2].hits] == [1]
    assert pages[3].hits == []
    for number, page in enumerate(pages, start=1):
        assert page.total == 7
        assert page.pages == 3
        assert page.page == number
        assert page.page_size == 3


def test_search_without_match_has_one_page(store):
    page = store.search(HitQuery(plate="京A00000"))
    assert page.total == 0
    assert page.pages == 1


@pytest.mark.parametrize("page, page_size", [(0, 10), (1, 0), (1, 501), (True, 10), (1.5, 10)])
def test_search_rejects_invalid_page(store, page, page_size):
    with pytest.raises(InvalidQueryError):
        store.search(HitQuery(), page=page, page_size=page_size)


def test_search_uses_indexes(search_store, tmp_path):
    connection = sqlite3.connect(tmp_path / "web-data" / DATABASE_NAME)
    try:
        plans = {
            "camera": "SELECT id FROM hits WHERE camera_id = 'x' ORDER BY frame_time DESC",
            "plate": "SELECT id FROM hits WHERE plate_text GLOB '京E*'",
            "topic": "SELECT id FROM hits WHERE topic = 'plate' ORDER BY frame_time DESC",
            "time": "SELECT id FROM hits WHERE frame_time >= '2026' ORDER BY frame_time DESC",
        }
        for name, sql in plans.items():
            plan = " ".join(row[-1] for row in connection.execute("EXPLAIN QUERY PLAN " + sql))
            assert "USING" in plan, f"{name}: {plan}"
            assert "INDEX" in plan, f"{name}: {plan}"
    finally:
        connection.close()


# Acknowledgement


def test_acknowledge_records_user_time_note(store, clock):
    hit = store.add(plate_message(5, topic="hit.plate"))
    clock.now_s += 90
    acked = store.acknowledge(hit.id, "  li.wei ", "stopped at gate; false alarm")
    assert acked.acked_by == "li.wei"
    assert acked.acked_at == "2026-11-30T00:54:50.000Z"
    assert acked.ack_note == "stopped at gate; false alarm"
    assert store.get(hit.id) == acked


def test_acknowledge_unknown_hit(store):
    with pytest.raises(HitNotFoundError, match="hit 404 not found"):
        store.acknowledge(404, "li.wei", "")


def test_acknowledge_bounds_note(store):
    hit = store.add(plate_message(5))
    store.acknowledge(hit.id, "li.wei", "x" * MAX_ACK_NOTE_CHARS)
    with pytest.raises(InvalidAckError, match=f"maximum {MAX_ACK_NOTE_CHARS}"):
        store.acknowledge(hit.id, "li.wei", "x" * (MAX_ACK_NOTE_CHARS + 1))
    with pytest.raises(InvalidAckError, match="user is empty"):
        store.acknowledge(hit.id, " ", "note")
    assert store.get(hit.id).ack_note == "x" * MAX_ACK_NOTE_CHARS


# Retention


def all_files(store) -> set[str]:
    return {str(path.relative_to(store.data_dir)) for path in store.media_dir.rglob("*") if path.is_file()}


def test_retention_by_age(store, clock):
    old = store.add(plate_message(1))
    clock.advance_days(10)
    young = store.add(plate_message(2))
    clock.advance_days(25)  # old is 35 days old, young 25

    report = store.apply_retention(max_age_days=30, max_bytes=10**9)

    assert report.deleted_rows == 1
    assert report.deleted_files == 2
    assert report.freed_bytes == len(SNAPSHOT) + len(CROP)
    assert store.get(old.id) is None
    assert store.get(young.id) == young
    assert all_files(store) == {young.snapshot_path, young.crop_path}
    assert not (store.media_dir / "2026-11-30").exists()
    assert store.last_sequence("hub-07") == 2


def test_retention_logs_once(store, clock, caplog):
    store.add(plate_message(1))
    clock.advance_days(31)
    with caplog.at_level("INFO", logger="edge.web.store"):
        store.apply_retention(30, 10**9)
        store.apply_retention(30, 10**9)
    lines = [record for record in caplog.records if "retention" in record.getMessage()]
    assert len(lines) == 1
    assert "deleted 1 hit(s) older than 30 days" in lines[0].getMessage()


def test_retention_by_size_oldest_first(store, clock):
    image_bytes = 100_000
    hits = []
    for sequence in range(1, 7):
        image = b"\xff\xd8" + bytes([sequence]) * (image_bytes - 2)
        hits.append(store.add(plate_message(sequence, images=(image, image))))
        clock.now_s += 60
    usage = store.usage()
    assert usage.media_bytes == 6 * 2 * image_bytes
    # Room for the database and the files of three hits, with half a hit to spare.
    max_bytes = usage.database_bytes + 3 * 2 * image_bytes + image_bytes

    report = store.apply_retention(max_age_days=30, max_bytes=max_bytes)

    assert report.deleted_rows == 3
    assert report.deleted_files == 6
    assert report.freed_bytes == 3 * 2 * image_bytes
    assert [store.get(hit.id) for hit in hits[:3]] == [None, None, None]
    assert [store.get(hit.id) for hit in hits[3:]] == hits[3:]
    assert all_files(store) == {path for hit in hits[3:] for path in (hit.snapshot_path, hit.crop_path)}
    after = store.usage()
    assert after.database_bytes + after.media_bytes <= max_bytes


def test_retention_size_cap_below_database(store):
    hit = store.add(plate_message(1))
    report = store.apply_retention(max_age_days=30, max_bytes=1)
    assert report.deleted_rows == 1
    assert store.get(hit.id) is None
    assert all_files(store) == set()
    assert store.apply_retention(max_age_days=30, max_bytes=1).deleted_rows == 0


def test_retention_deletes_orphan_files(tmp_path, clock):
    store = HitStore(tmp_path, clock=clock)
    try:
        hit = store.add(plate_message(1))
        day_folder = store.media_dir / "2026-11-30"
        old_orphan = day_folder / "crashed-before-row.jpg"
        old_orphan.write_bytes(b"\xff\xd8orphan")
        old_temporary = day_folder / "x-snapshot.jpg.tmp"
        old_temporary.write_bytes(b"\xff\xd8part")
        past = time.time() - ORPHAN_GRACE_S - 60
        for path in (old_orphan, old_temporary):
            os.utime(path, (past, past))
        fresh_orphan = day_folder / "being-written.jpg"
        fresh_orphan.write_bytes(b"\xff\xd8new")
        empty_folder = store.media_dir / "2026-11-01"
        empty_folder.mkdir()
        other_folder = store.media_dir / "not-a-day"
        other_folder.mkdir()

        report = store.apply_retention(max_age_days=30, max_bytes=10**9)

        assert report.deleted_rows == 0
        assert report.deleted_files == 2
        assert not old_orphan.exists()
        assert not old_temporary.exists()
        assert fresh_orphan.exists()
        assert not empty_folder.exists()
        assert other_folder.exists()
        assert store.media_path(hit.snapshot_path).exists()
        assert store.media_path(hit.crop_path).exists()
    finally:
        store.close()


def test_orphan_sweep_runs_hourly(store, clock):
    store.apply_retention(30, 10**9)
    folder = store.media_dir / "2026-11-30"
    folder.mkdir()
    orphan = folder / "orphan.jpg"
    orphan.write_bytes(b"\xff\xd8")
    past = time.time() - ORPHAN_GRACE_S - 60
    os.utime(orphan, (past, past))
    assert store.apply_retention(30, 10**9).deleted_files == 0
    clock.now_s += ORPHAN_SWEEP_INTERVAL_S
    assert store.apply_retention(30, 10**9).deleted_files == 1
    assert not orphan.exists()


def test_retention_rejects_invalid_limits(store):
    with pytest.raises(ValueError, match="must be above 0"):
        store.apply_retention(0, 10**9)


# Camera health


def test_health_fps_from_frames_decoded(store, clock):
    store.update_health(health_header(10.0, [camera("gate-north", 100), camera("gate-east", 0, "connecting")]))
    first = store.camera_status()
    assert [(status.camera_id, status.fps) for status in first] == [("gate-east", None), ("gate-north", None)]

    clock.now_s += 5
    store.update_health(health_header(15.0, [camera("gate-north", 350), camera("gate-east", 0, "backoff")]))
    east, north = store.camera_status()
    assert north.fps == 50.0
    assert north.frames_decoded == 350
    assert north.state == "streaming"
    assert north.frames_dropped == 1
    assert north.reconnects == 2
    assert north.last_error is None
    assert north.last_frame_age_s == 0.013
    assert north.updated_at == "2026-11-30T00:53:25.000Z"
    assert east.fps == 0.0
    assert east.state == "backoff"


def test_long_feed_texts_cut(store):
    store.update_health(health_header(10.0, [{**camera("gate-north", 100), "camera_name": "X" * 500,
                                              "last_error": "E" * 5000}]))
    (status,) = store.camera_status()
    assert len(status.camera_name) == MAX_FEED_TEXT_CHARS
    assert status.camera_name.endswith("X…")
    assert len(status.last_error) == MAX_FEED_TEXT_CHARS


def test_health_fps_unknown_after_restart(store):
    store.update_health(health_header(100.0, [camera("gate-north", 5000)]))
    store.update_health(health_header(5.0, [camera("gate-north", 40)]))
    assert store.camera_status()[0].fps is None
    store.update_health(health_header(10.0, [camera("gate-north", 140)]))
    assert store.camera_status()[0].fps == 20.0


def test_health_fps_from_sent_at_without_uptime(store):
    header = health_header(0, [camera("gate-north", 100)])
    del header["uptime_s"]
    store.update_health(header)
    header = dict(header, sent_at="2026-12-04T21:38:16.734Z", cameras=[camera("gate-north", 150)])
    store.update_health(header)
    assert store.camera_status()[0].fps == 25.0


def test_camera_status_sorted(store):
    store.update_health(health_header(1.0, [camera("b", 1), camera("a", 1)], publisher_id="hub-09"))
    store.update_health(health_header(1.0, [camera("z", 1)], publisher_id="hub-01"))
    assert [(s.publisher_id, s.camera_id) for s in store.camera_status()] == [
        ("hub-01", "z"), ("hub-09", "a"), ("hub-09", "b")]


def test_health_is_not_a_hit(store):
    store.update_health(health_header(1.0, [camera("gate-north", 1)]))
    assert store.search(HitQuery()).total == 0
    assert store.last_sequence("hub-07") is None


def test_health_rejects_invalid_header(store):
    with pytest.raises(InvalidHitError, match="without publisher_id or cameras"):
        store.update_health({"schema": 1, "publisher_id": "hub-07", "sequence": 3})


def test_retention_of_camera_rows(store, clock):
    store.update_health(health_header(1.0, [camera("gone", 1)], publisher_id="hub-01"))
    clock.advance_days(20)
    store.update_health(health_header(1.0, [camera("alive", 1)], publisher_id="hub-02"))
    store.add(plate_message(1))
    clock.advance_days(15)

    report = store.apply_retention(max_age_days=30, max_bytes=10**9)

    assert report.deleted_cameras == 1
    assert report.deleted_rows == 0
    assert [status.camera_id for status in store.camera_status()] == ["alive"]


# Threads


def test_concurrent_writers_and_readers(store):
    errors = []

    def write(publisher_id: str) -> None:
        try:
            for sequence in range(1, 51):
                assert store.add(plate_message(sequence, publisher_id=publisher_id)) is not None
        except Exception as error:  # collected for the assert below, with the thread's name
            errors.append(f"{publisher_id}: {error!r}")

    def read() -> None:
        try:
            for _ in range(50):
                store.search(HitQuery(plate="京E", plate_mode="prefix"), page_size=10)
                store.camera_status()
        except Exception as error:
            errors.append(f"reader: {error!r}")

    threads = [threading.Thread(target=write, args=(f"hub-{n}",)) for n in range(4)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.search(HitQuery()).total == 200


def test_close_waits_for_calls_in_progress(tmp_path):
    """close() from another thread once closed a connection during a retention call and crashed the process."""
    store = HitStore(tmp_path)
    for sequence in range(1, 21):
        store.add(plate_message(sequence))
    outcomes = []
    searching = threading.Barrier(5)

    def search_until_closed() -> None:
        try:
            store.search(HitQuery())
            searching.wait(5)
            while True:
                store.search(HitQuery(plate="京E", plate_mode="prefix"))
                store.usage()
        except StoreClosedError:
            outcomes.append("closed")

    threads = [threading.Thread(target=search_until_closed) for _ in range(4)]
    for thread in threads:
        thread.start()
    searching.wait(5)  # every thread has its connection open and keeps querying
    store.close()
    for thread in threads:
        thread.join(5)
    assert outcomes == ["closed"] * 4
    with pytest.raises(StoreClosedError):
        store.get(1)


def test_failed_insert_removes_written_files(store, monkeypatch):
    def fail_insert(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_insert_hit", fail_insert)
    with pytest.raises(StoreError, match="cannot store plate #7 from hub-07 .*disk is full"):
        store.add(plate_message(7))
    assert all_files(store) == set()
    monkeypatch.undo()
    assert store.add(plate_message(7)) is not None


def test_newer_store_version_is_rejected(tmp_path):
    HitStore(tmp_path).close()
    connection = sqlite3.connect(tmp_path / DATABASE_NAME)
    connection.execute("PRAGMA user_version=99")
    connection.close()
    with pytest.raises(StoreError, match="has store version 99, this program reads up to 2"):
        HitStore(tmp_path)


def test_version_1_database_gains_camera_names(tmp_path):
    """A database written before camera names were stored opens, keeps its rows and stores names from then on."""
    store = HitStore(tmp_path)
    store.update_health({"schema": 1, "publisher_id": "hub-07", "uptime_s": 5.0,
                         "cameras": [{"camera_id": "gate-north", "frames_decoded": 10}]})
    store.close()
    with sqlite3.connect(tmp_path / "hits.sqlite3") as connection:
        connection.execute("ALTER TABLE cameras DROP COLUMN camera_name")
        connection.execute("PRAGMA user_version=1")
    reopened = HitStore(tmp_path)
    (old,) = reopened.camera_status()
    assert old.camera_name is None
    reopened.update_health({"schema": 1, "publisher_id": "hub-07", "uptime_s": 10.0,
                            "cameras": [{"camera_id": "gate-north", "camera_name": "北门入口", "frames_decoded": 20}]})
    (named,) = reopened.camera_status()
    assert named.camera_name == "北门入口"
    assert named.frames_decoded == 20
    reopened.close()


def test_second_acknowledgement_rejected(store):
    hit = store.add(plate_message(5, topic="hit.plate"))
    store.acknowledge(hit.id, "li.wei", "first")
    with pytest.raises(AlreadyAcknowledgedError, match="already acknowledged by li.wei"):
        store.acknowledge(hit.id, "zhang.san", "second")
    kept = store.get(hit.id)
    assert kept.acked_by == "li.wei"
    assert kept.ack_note == "first"
