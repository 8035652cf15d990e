"""FeedIntake over real ZeroMQ on 127.0.0.1, with the real Publisher, outbox and ReplayServer from edge/bus."""

from __future__ import annotations

import json
import threading
import time

import pytest
import zmq

import edge.web.intake as intake_module
from edge.bus.outbox import OutboxReader
from edge.bus.publisher import OutboxSettings, Publisher
from edge.bus.replay import ReplayServer
from edge.config.web import FeedSource
from edge.web.intake import FeedIntake
from edge.web.store import HitQuery, HitStore, StoredHit, StoreError
from tests.conftest import free_port, wait_until

SNAPSHOT = b"\xff\xd8\xff\xe0snapshot"
CROP = b"\xff\xd8\xff\xe0crop"
TIMEOUT_S = 30


def local_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def start_publisher(outbox_path, endpoint: str, replay_endpoint: str, publisher_id: str = "hub-07") -> Publisher:
    publisher = Publisher(endpoint, publisher_id, queue_size=1000,
                          outbox=OutboxSettings(outbox_path, 3600, 10**9, replay_endpoint))
    publisher.start()
    return publisher


def plate_body(index: int) -> dict:
    return {"camera_id": "gate-north", "track_id": index, "frame_time": "2026-12-04T21:38:13.211Z",
            "plate": {"text": f"京A{index:05d}", "type": "standard", "colour": "blue", "confidence": 0.99},
            "vehicle": {"class": "car", "box_xyxy": [1.0, 2.0, 3.0, 4.0]}}


def face_body(index: int) -> dict:
    return {"camera_id": "gate-south", "track_id": index, "frame_time": "2026-12-04T22:05:19.661Z",
            "person": {"id": 1, "name": "Barack Obama", "list_name": "wanted", "reason": "case 2026-207"},
            "similarity": 0.74, "face": {"box_xyxy": [1.0, 2.0, 3.0, 4.0]}}


def det_body() -> dict:
    return {"camera_id": "gate-north", "frame_time": "2026-12-04T21:38:13.211Z", "frame_size": [1280, 720],
            "detections": []}


def publish_rounds(publisher: Publisher, rounds: int) -> None:
    """Publish `rounds` times hit.plate, det, hit.face and plate, so that 3 of every 4 sequences are hits."""
    first = publisher.sent + publisher.dropped
    for index in range(rounds):
        watchlist = {"entry_id": 1, "pattern": f"京A{index:05d}", "list_name": "stolen-vehicles", "reason": "case",
                     "max_edits": 0, "distance": 0}
        assert publisher.publish("hit.plate", {**plate_body(index), "watchlist": watchlist}, [SNAPSHOT, CROP])
        assert publisher.publish("det", det_body())
        assert publisher.publish("hit.face", face_body(index), [SNAPSHOT, CROP])
        assert publisher.publish("plate", plate_body(index), [SNAPSHOT, CROP])
    assert wait_until(lambda: publisher.sent == first + 4 * rounds, 10), "the publisher did not send every message"


def outbox_sequences(outbox_path) -> set[int]:
    """Return the sequences of every hit the publisher stored, which are exactly the hits it published."""
    reader = OutboxReader(outbox_path)
    try:
        return {message.sequence for message in reader.read_range(0, 10**9, 100_000)}
    finally:
        reader.close()


def stored_sequences(store: HitStore) -> set[int]:
    sequences = set()
    page = 1
    while True:
        result = store.search(HitQuery(), page=page, page_size=500)
        sequences.update(hit.sequence for hit in result.hits)
        if page >= result.pages:
            return sequences
        page += 1


def ping_until(publisher: Publisher, condition, timeout_s: float = TIMEOUT_S, topic: str = "det",
               body: dict | None = None) -> bool:
    """Publish a message that is not a hit every 50 ms until `condition` holds; return whether it did.

    The intake needs a live message to see a gap, like a daemon's periodic health message in production.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        publisher.publish(topic, body if body is not None else det_body())
        time.sleep(0.05)
    return bool(condition())


class Forwarder:
    """A SUB-to-PUB relay between a publisher and the intake that drops every message while `dropping` is set,
    like a subscriber that misses messages."""

    def __init__(self, upstream: str):
        self.endpoint = local_endpoint()
        self.dropping = threading.Event()
        self.dropped = 0
        self.forwarded = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(upstream,), daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self, upstream: str) -> None:
        context = zmq.Context.instance()
        inbound = context.socket(zmq.SUB)
        inbound.setsockopt(zmq.LINGER, 0)
        inbound.setsockopt(zmq.SUBSCRIBE, b"")
        inbound.connect(upstream)
        outbound = context.socket(zmq.PUB)
        outbound.setsockopt(zmq.LINGER, 0)
        outbound.bind(self.endpoint)
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not inbound.poll(50):
                    continue
                frames = inbound.recv_multipart()
                if self.dropping.is_set():
                    self.dropped += 1
                else:
                    outbound.send_multipart(frames)
                    self.forwarded += 1
        finally:
            inbound.close()
            outbound.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def store(tmp_path):
    hit_store = HitStore(tmp_path / "web-data")
    yield hit_store
    hit_store.close()


@pytest.fixture
def closing():
    """Close what a test registers, in reverse order, also when the test fails."""
    resources = []
    yield resources.append
    for resource in reversed(resources):
        resource.close()


def test_hits_published_before_start_are_replayed(tmp_path, store, closing):
    outbox = tmp_path / "outbox.sqlite"
    endpoint, replay_endpoint = local_endpoint(), local_endpoint()
    publisher = start_publisher(outbox, endpoint, replay_endpoint)
    closing(publisher)
    publish_rounds(publisher, 5)
    expected = outbox_sequences(outbox)
    assert len(expected) == 15

    stored_hits: list[StoredHit] = []
    intake = FeedIntake([FeedSource(endpoint=endpoint, replay_endpoint=replay_endpoint)], store,
                        on_stored=stored_hits.append)
    closing(intake)
    intake.start()
    health = {"uptime_s": 6.1, "cameras": [{"camera_id": "gate-north", "state": "streaming", "frames_decoded": 62,
                                            "frames_dropped": 1, "reconnects": 0, "last_error": None,
                                            "last_frame_age_s": 0.013}]}
    assert ping_until(publisher, lambda: stored_sequences(store) == expected, topic="health", body=health), \
        f"stored {sorted(stored_sequences(store))}, expected {sorted(expected)}"

    (status,) = intake.status()
    assert status.hits_stored == 15
    assert status.replayed == 15
    assert status.gaps_seen == 1
    assert status.replay_failures == 0
    assert status.restarts == 0
    assert status.state == "connected"
    assert status.last_error is None
    assert sorted(hit.sequence for hit in stored_hits) == sorted(expected)
    assert {hit.topic for hit in stored_hits} == {"plate", "hit.plate", "hit.face"}
    assert store.last_sequence("hub-07") == max(expected)
    (camera,) = store.camera_status()
    assert camera.camera_id == "gate-north"
    assert camera.frames_decoded == 62


def test_gap_in_the_middle_is_replayed(tmp_path, store, closing):
    outbox = tmp_path / "outbox.sqlite"
    replay_endpoint = local_endpoint()
    publisher = start_publisher(outbox, local_endpoint(), replay_endpoint)
    closing(publisher)
    forwarder = Forwarder(publisher.endpoint)
    closing(forwarder)
    intake = FeedIntake([FeedSource(endpoint=forwarder.endpoint, replay_endpoint=replay_endpoint)], store)
    closing(intake)
    intake.start()

    publish_rounds(publisher, 3)
    assert ping_until(publisher, lambda: stored_sequences(store) == outbox_sequences(outbox))
    gaps_before = intake.status()[0].gaps_seen
    replayed_before = intake.status()[0].replayed

    forwarder.dropping.set()
    publish_rounds(publisher, 5)
    assert wait_until(lambda: forwarder.dropped >= 20, 10)
    forwarder.dropping.clear()
    missed = outbox_sequences(outbox) - stored_sequences(store)
    assert len(missed) == 15

    publish_rounds(publisher, 2)
    assert ping_until(publisher, lambda: stored_sequences(store) == outbox_sequences(outbox)), \
        f"missing {sorted(outbox_sequences(outbox) - stored_sequences(store))}"
    (status,) = intake.status()
    assert status.gaps_seen == gaps_before + 1
    assert status.replayed == replayed_before + 15
    assert status.hits_stored == 30
    assert status.replay_failures == 0


def test_publisher_restart_with_same_outbox(tmp_path, store, closing):
    outbox = tmp_path / "outbox.sqlite"
    endpoint, replay_endpoint = local_endpoint(), local_endpoint()
    first_run = start_publisher(outbox, endpoint, replay_endpoint)
    intake = FeedIntake([FeedSource(endpoint=endpoint, replay_endpoint=replay_endpoint)], store)
    closing(intake)
    intake.start()
    publish_rounds(first_run, 2)
    assert ping_until(first_run, lambda: stored_sequences(store) == outbox_sequences(outbox))
    first_run.close()

    second_run = start_publisher(outbox, endpoint, replay_endpoint)
    closing(second_run)
    publish_rounds(second_run, 3)
    assert second_run.sequence > 1000, "a restart resumes after the reserved block of sequences"
    assert ping_until(second_run, lambda: stored_sequences(store) == outbox_sequences(outbox)), \
        f"missing {sorted(outbox_sequences(outbox) - stored_sequences(store))}"
    (status,) = intake.status()
    assert status.hits_stored == 15
    assert status.restarts == 0
    assert max(stored_sequences(store)) > 1000


def test_publisher_restart_without_outbox(tmp_path, store, closing):
    endpoint, replay_endpoint = local_endpoint(), local_endpoint()
    first_run = start_publisher(tmp_path / "first.sqlite", endpoint, replay_endpoint)
    intake = FeedIntake([FeedSource(endpoint=endpoint, replay_endpoint=replay_endpoint)], store)
    closing(intake)
    intake.start()
    publish_rounds(first_run, 3)
    assert ping_until(first_run, lambda: stored_sequences(store) == outbox_sequences(tmp_path / "first.sqlite"))
    # Move the intake's last sequence well above what the second run reaches in this test, so that its first
    # message shows the restart. The second run would need about 300 pings, 15 s, to pass it.
    received = intake.status()[0].messages_received
    for _ in range(300):
        assert first_run.publish("det", det_body())
    assert wait_until(lambda: intake.status()[0].messages_received >= received + 300, 10)
    first_run.close()

    second_run = start_publisher(tmp_path / "second.sqlite", endpoint, replay_endpoint)
    closing(second_run)
    publish_rounds(second_run, 3)
    assert ping_until(second_run, lambda: store.search(HitQuery()).total == 18), \
        f"stored {store.search(HitQuery()).total} hits"
    (status,) = intake.status()
    assert status.restarts == 1
    assert status.hits_stored == 18
    assert store.last_sequence("hub-07") == max(outbox_sequences(tmp_path / "second.sqlite"))
    plates = [hit.plate_text for hit in store.search(HitQuery(topic="plate")).hits]
    assert sorted(plates) == sorted(["京A00000", "京A00001", "京A00002"] * 2)


def test_gap_without_replay_endpoint_is_counted(tmp_path, store, closing, caplog):
    outbox = tmp_path / "outbox.sqlite"
    publisher = start_publisher(outbox, local_endpoint(), "")
    closing(publisher)
    forwarder = Forwarder(publisher.endpoint)
    closing(forwarder)
    intake = FeedIntake([FeedSource(endpoint=forwarder.endpoint)], store)
    closing(intake)
    caplog.set_level("INFO", logger="edge.web.intake")
    intake.start()
    assert ping_until(publisher, lambda: intake.status()[0].messages_received > 0)
    gaps_before = intake.status()[0].gaps_seen

    publish_rounds(publisher, 2)
    before_drop = outbox_sequences(outbox)
    assert wait_until(lambda: stored_sequences(store) == before_drop, 10)
    forwarder.dropping.set()
    publish_rounds(publisher, 2)
    assert wait_until(lambda: forwarder.dropped >= 8, 10)
    forwarder.dropping.clear()
    dropped = outbox_sequences(outbox) - before_drop
    publish_rounds(publisher, 2)
    after_drop = outbox_sequences(outbox) - before_drop - dropped
    assert wait_until(lambda: stored_sequences(store) == before_drop | after_drop, 10), \
        f"stored {sorted(stored_sequences(store))}"

    (status,) = intake.status()
    assert status.gaps_seen == gaps_before + 1
    assert status.replayed == 0
    assert status.replay_failures == 0
    warnings = [record for record in caplog.records if "has no replay_endpoint" in record.getMessage()]
    assert len(warnings) == 1


def test_failed_replay_is_retried(tmp_path, store, closing, monkeypatch):
    monkeypatch.setattr(intake_module, "REPLAY_TIMEOUT_S", 0.3)
    monkeypatch.setattr(intake_module, "REPLAY_RETRY_FIRST_S", 0.2)
    outbox = tmp_path / "outbox.sqlite"
    publisher = start_publisher(outbox, local_endpoint(), "")  # the test serves replay itself, later
    closing(publisher)
    publish_rounds(publisher, 2)
    replay_endpoint = local_endpoint()
    intake = FeedIntake([FeedSource(endpoint=publisher.endpoint, replay_endpoint=replay_endpoint)], store)
    closing(intake)
    intake.start()
    assert ping_until(publisher, lambda: intake.status()[0].replay_failures >= 2)
    assert "no reply from the replay endpoint" in intake.status()[0].last_error
    assert stored_sequences(store) == set()

    server = ReplayServer(replay_endpoint, outbox)
    server.start()
    closing(server)
    assert ping_until(publisher, lambda: stored_sequences(store) == outbox_sequences(outbox))
    assert intake.status()[0].replayed == 6


def test_invalid_messages_do_not_stop_intake(store, closing):
    context = zmq.Context.instance()
    sender = context.socket(zmq.PUB)
    sender.setsockopt(zmq.LINGER, 0)
    endpoint = local_endpoint()
    sender.bind(endpoint)
    closing(sender)

    callbacks = []

    def broken_callback(hit: StoredHit) -> None:
        callbacks.append(hit.sequence)
        raise RuntimeError("callback failed")

    intake = FeedIntake([FeedSource(endpoint=endpoint)], store, on_stored=broken_callback)
    closing(intake)
    intake.start()
    ping = [b"det", json.dumps({"schema": 1, "publisher_id": "raw", "sequence": 1}).encode()]
    assert wait_until(lambda: sender.send_multipart(ping) or intake.status()[0].messages_received > 0, 10)

    sender.send_multipart([b"plate"])
    sender.send_multipart([b"plate", b"not json"])
    sender.send_multipart([b"hit.plate", json.dumps({"schema": 1, "publisher_id": "raw", "sequence": 2}).encode()])
    sender.send_multipart([b"plate", json.dumps({"schema": 1, "publisher_id": "raw", "sequence": 3,
                                                 "camera_id": "cam", **plate_body(1)}).encode(), SNAPSHOT])
    assert wait_until(lambda: store.search(HitQuery()).total == 1, 10)
    (status,) = intake.status()
    assert status.invalid_messages == 3
    assert status.hits_stored == 1
    assert callbacks == [3]


def test_close_is_prompt(store):
    intake = FeedIntake([FeedSource(endpoint=local_endpoint(), replay_endpoint=local_endpoint()),
                         FeedSource(endpoint=local_endpoint())], store)
    intake.start()
    assert wait_until(lambda: all(status.state == "connecting" for status in intake.status()), 5)
    started = time.monotonic()
    intake.close()
    assert time.monotonic() - started < 1.0
    assert [status.state for status in intake.status()] == ["stopped", "stopped"]
    assert not any(thread.name.startswith("intake ") for thread in threading.enumerate())


def test_start_twice_is_rejected(store):
    intake = FeedIntake([], store)
    intake.start()
    with pytest.raises(RuntimeError, match="called twice"):
        intake.start()
    intake.close()


def test_hit_that_failed_to_store_is_replayed_later(tmp_path, store, closing, monkeypatch):
    monkeypatch.setattr(intake_module, "REPLAY_RETRY_FIRST_S", 0.2)
    outbox = tmp_path / "outbox.sqlite"
    replay_endpoint = local_endpoint()
    publisher = start_publisher(outbox, local_endpoint(), replay_endpoint)
    closing(publisher)
    intake = FeedIntake([FeedSource(endpoint=publisher.endpoint, replay_endpoint=replay_endpoint)], store)
    closing(intake)
    intake.start()
    assert ping_until(publisher, lambda: intake.status()[0].messages_received > 0)

    real_add = store.add
    failures = []

    def add_failing_once(message):
        if message.topic == "hit.face" and not failures:
            failures.append(message.header["sequence"])
            raise StoreError("database or disk is full")
        return real_add(message)

    monkeypatch.setattr(store, "add", add_failing_once)
    publish_rounds(publisher, 2)
    assert ping_until(publisher, lambda: stored_sequences(store) == outbox_sequences(outbox)), \
        f"missing {sorted(outbox_sequences(outbox) - stored_sequences(store))}"
    (status,) = intake.status()
    assert status.store_errors == 1
    assert status.last_error == "database or disk is full"
    assert status.replayed >= 1
    assert failures[0] in stored_sequences(store)


@pytest.mark.parametrize("header, identity", [
    (b'{"schema":1,"publisher_id":"hub-07","sequence":34,"sent_at":"x"}', ("det", "hub-07", 34)),
    (b'{"schema":1,"publisher_id":"hub\\"07","sequence":5,"detections":[]}', ("det", 'hub"07', 5)),
    ('{"schema":1,"publisher_id":"边缘-1","sequence":7}'.encode(), ("det", "边缘-1", 7)),
    (b'{"sequence": 9, "publisher_id": "hub-07", "schema": 1}', ("det", "hub-07", 9)),
    (b'{"schema":1,"publisher_id":"hub-07","sequence":"9"}', None),
    (b'{"schema":1,"sequence":9}', None),
    (b'[1, 2]', None),
    (b'\xff', None),
])
def test_identity_read_from_header(header, identity):
    assert intake_module._read_identity([b"det", header]) == identity
