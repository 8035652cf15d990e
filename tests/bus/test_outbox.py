"""Outbox on real SQLite files, and the publisher's use of it: storing, retention, failures and restarts."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from edge.bus.outbox import (RETENTION_INTERVAL_WRITES, SEQUENCE_BLOCK, Outbox, decode_images, encode_images,
                             is_stored_topic)
from edge.bus.publisher import OutboxSettings, Publisher, PublisherError
from tests.conftest import free_port, wait_until


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def open_outbox(tmp_path, max_age_s: float = 3600, max_bytes: int = 10**9, clock=None) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite", max_age_s, max_bytes, clock or FakeClock())


def test_stored_topics():
    assert is_stored_topic("hit.plate")
    assert is_stored_topic("hit.face")
    assert is_stored_topic("hit.anything-new")
    assert is_stored_topic("plate")
    assert not is_stored_topic("det")
    assert not is_stored_topic("health")
    assert not is_stored_topic("plates")


@pytest.mark.parametrize("images", [[], [b""], [b"\xff\xd8one"], [b"a" * 70_000, b"", b"\x00\x01crop"]])
def test_images_round_trip(images):
    assert decode_images(encode_images(images)) == images


def test_write_and_read_range(tmp_path):
    outbox = open_outbox(tmp_path)
    for sequence in (3, 4, 7, 9):
        outbox.write(sequence, "hit.plate", f'{{"sequence":{sequence}}}'.encode(), [b"snap", bytes([sequence])])

    messages = outbox.read_range(4, 9, limit=2)
    assert [m.sequence for m in messages] == [4, 7]
    assert messages[0].topic == "hit.plate"
    assert messages[0].header == b'{"sequence":4}'
    assert messages[0].images == [b"snap", b"\x04"]
    assert [m.sequence for m in outbox.read_range(8, 100, limit=10)] == [9]
    assert outbox.read_range(10, 20, limit=10) == []
    assert outbox.last_sequence() == 9
    assert outbox.oldest_sequence() == 3
    outbox.close()


def test_empty_outbox_bounds(tmp_path):
    outbox = open_outbox(tmp_path)
    assert outbox.last_sequence() == 0
    assert outbox.oldest_sequence() is None
    assert outbox.next_sequence() == 1
    outbox.close()


def test_next_sequence_after_reservation(tmp_path):
    outbox = open_outbox(tmp_path)
    outbox.write(5, "plate", b"{}", [])
    outbox.reserve_through(1000)
    assert outbox.next_sequence() == 1001
    outbox.close()
    reopened = open_outbox(tmp_path)
    assert reopened.next_sequence() == 1001
    reopened.close()


def test_retention_by_age(tmp_path):
    clock = FakeClock()
    outbox = open_outbox(tmp_path, max_age_s=60, clock=clock)
    for sequence in (1, 2, 3):
        outbox.write(sequence, "hit.face", b"{}", [b"x"])
    clock.now += 61
    outbox.write(4, "hit.face", b"{}", [b"x"])

    assert outbox.expired_through() == 0
    assert outbox.apply_retention() == 3
    assert [m.sequence for m in outbox.read_range(0, 100, 100)] == [4]
    assert outbox.expired_through() == 3
    outbox.close()


def test_retention_by_size_keeps_newest(tmp_path):
    outbox = open_outbox(tmp_path, max_bytes=1000)
    header = b"h" * 96
    for sequence in range(1, 6):
        # 96 header bytes + 4 length bytes + 200 image bytes = 300 bytes each, so three fit in 1000.
        outbox.write(sequence, "plate", header, [b"i" * 200])

    assert outbox.apply_retention() == 2
    assert [m.sequence for m in outbox.read_range(0, 100, 100)] == [3, 4, 5]
    assert outbox.expired_through() == 2
    outbox.close()


def test_retention_runs_every_interval(tmp_path):
    outbox = open_outbox(tmp_path, max_bytes=1000)
    for sequence in range(1, RETENTION_INTERVAL_WRITES + 1):
        outbox.write(sequence, "plate", b"h" * 96, [b"i" * 200])

    stored = [m.sequence for m in outbox.read_range(0, 10**6, 10**6)]
    assert stored == [RETENTION_INTERVAL_WRITES - 2, RETENTION_INTERVAL_WRITES - 1, RETENTION_INTERVAL_WRITES]
    outbox.close()


def test_retention_after_interval_without_writes(tmp_path):
    # Few hits: 3 messages, far fewer than RETENTION_INTERVAL_WRITES, must still expire on time.
    clock = FakeClock()
    outbox = open_outbox(tmp_path, max_age_s=60, clock=clock)
    for sequence in (1, 2, 3):
        outbox.write(sequence, "plate", b"{}", [])
    clock.now += 5
    assert outbox.apply_retention_if_due() == 0, "a tenth of max_age_s has not passed"

    clock.now += 61
    assert outbox.apply_retention_if_due() == 3
    assert outbox.oldest_sequence() is None
    outbox.close()


def test_publisher_expires_messages_while_only_health_flows(tmp_path):
    publisher = Publisher(f"tcp://127.0.0.1:{free_port()}", "box-test", queue_size=100,
                          outbox=OutboxSettings(tmp_path / "outbox.sqlite", 60, 10**9, ""))
    publisher.start()
    try:
        clock = FakeClock()
        publisher._outbox._clock = clock
        publisher._outbox._last_retention_s = clock.now
        publisher.publish("plate", {"index": 1})
        assert wait_until(lambda: publisher._outbox.stored_messages == 1, 10)
        clock.now += 120
        publisher.publish("health", {"uptime_s": 120.0})
        assert wait_until(lambda: publisher._outbox.stored_messages == 0, 10)
    finally:
        publisher.close()


def test_retention_at_open(tmp_path):
    clock = FakeClock()
    outbox = open_outbox(tmp_path, max_age_s=60, clock=clock)
    outbox.write(1, "plate", b"{}", [])
    outbox.close()
    clock.now += 120
    reopened = open_outbox(tmp_path, max_age_s=60, clock=clock)
    assert reopened.oldest_sequence() is None
    assert reopened.expired_through() == 1
    reopened.close()


def start_publisher(outbox_path, replay_endpoint: str = "") -> Publisher:
    publisher = Publisher(f"tcp://127.0.0.1:{free_port()}", "box-test", queue_size=100,
                          outbox=OutboxSettings(outbox_path, 3600, 10**9, replay_endpoint))
    publisher.start()
    return publisher


def test_publisher_stores_hits_and_plates_only(tmp_path):
    path = tmp_path / "outbox.sqlite"
    publisher = start_publisher(path)
    for topic in ("det", "hit.plate", "health", "plate", "hit.face", "det"):
        publisher.publish(topic, {"camera_id": "cam-1"}, [b"\xff\xd8snap"] if topic != "health" else [])
    publisher.close()

    outbox = open_outbox(tmp_path)
    stored = outbox.read_range(0, 100, 100)
    assert [(m.sequence, m.topic) for m in stored] == [(2, "hit.plate"), (4, "plate"), (5, "hit.face")]
    header = json.loads(stored[0].header)
    assert header["sequence"] == 2
    assert header["publisher_id"] == "box-test"
    assert header["camera_id"] == "cam-1"
    assert stored[0].images == [b"\xff\xd8snap"]
    assert publisher.outbox_errors == 0
    outbox.close()


def test_sequence_resumes_after_restart(tmp_path):
    path = tmp_path / "outbox.sqlite"
    first = start_publisher(path)
    for topic in ("hit.plate", "det", "det", "health"):
        first.publish(topic, {})
    first.close()
    assert first.sequence == 4

    second = start_publisher(path)
    second.publish("hit.face", {})
    second.close()

    outbox = open_outbox(tmp_path)
    new_sequence = outbox.last_sequence()
    outbox.close()
    # The first run reserved 1..SEQUENCE_BLOCK, so the second run starts after that block.
    assert new_sequence == SEQUENCE_BLOCK + 1
    assert new_sequence > first.sequence


def test_sequence_resumes_past_reserved_block(tmp_path):
    path = tmp_path / "outbox.sqlite"
    first = start_publisher(path)
    for _ in range(SEQUENCE_BLOCK + 5):
        # Wait for room rather than lose messages to the queue limit of 100.
        assert wait_until(lambda: first.publish("det", {}), 10)
    first.close()
    assert first.sequence == SEQUENCE_BLOCK + 5

    second = start_publisher(path)
    second.close()
    assert second.sequence == 2 * SEQUENCE_BLOCK


def test_new_outbox_warns_of_sequence_reset(tmp_path, caplog):
    """A missing outbox file restarted the numbering at 1 with only "resuming after sequence 0" at INFO."""
    caplog.set_level(logging.INFO, logger="edge.bus.publisher")
    path = tmp_path / "outbox.sqlite"

    start_publisher(path).close()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    caplog.clear()
    start_publisher(path).close()

    assert len(warnings) == 1, warnings
    assert f"outbox {path} did not exist (a new box, or a deleted file) and was created" in warnings[0]
    assert "sequence numbers start again at 1" in warnings[0]
    assert "replay has no older messages" in warnings[0]
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert f"outbox {path}: resuming after sequence" in caplog.text


def test_outbox_path_not_writable_stops_start(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    publisher = Publisher(f"tcp://127.0.0.1:{free_port()}", "box",
                          outbox=OutboxSettings(not_a_folder / "outbox.sqlite", 3600, 10**9))
    with pytest.raises(PublisherError, match=f"cannot open the outbox {not_a_folder / 'outbox.sqlite'}"):
        publisher.start()


# RLIMIT_FSIZE 0 makes every write to a regular file fail, as on a full disk. The script runs in a child process,
# because the test process must keep writing its own files.
FULL_DISK_SCRIPT = r"""
import json, resource, signal, sys, time
from pathlib import Path

import zmq

from edge.bus.publisher import OutboxSettings, Publisher

endpoint, outbox_path = sys.argv[1], Path(sys.argv[2])
publisher = Publisher(endpoint, "box-full", outbox=OutboxSettings(outbox_path, 3600, 10**9))
publisher.start()
subscriber = zmq.Context.instance().socket(zmq.SUB)
subscriber.setsockopt(zmq.SUBSCRIBE, b"hit.")
subscriber.connect(endpoint)
# Handshake: once one hit arrives, the subscription is in effect and no later hit is lost to its joining.
while not subscriber.poll(50):
    publisher.publish("hit.plate", {"handshake": True})
while subscriber.poll(200):
    subscriber.recv_multipart()
errors_before = publisher.outbox_errors

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
for index in range(5):
    publisher.publish("hit.plate", {"index": index}, [b"\xff\xd8" + b"x" * 50_000])
received = [json.loads(subscriber.recv_multipart()[1]) for _ in range(5)]
errors_full = publisher.outbox_errors - errors_before

resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
publisher.publish("hit.plate", {"index": "after"})
received.append(json.loads(subscriber.recv_multipart()[1]))
publisher.close()
print(json.dumps({"received": [m["index"] for m in received], "errors_full": errors_full,
                  "errors_total": publisher.outbox_errors - errors_before, "last": received[-1]["sequence"]}))
"""


def test_full_disk_keeps_publishing(tmp_path):
    path = tmp_path / "outbox.sqlite"
    result = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, f"tcp://127.0.0.1:{free_port()}", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    assert report["received"] == [0, 1, 2, 3, 4, "after"]
    assert report["errors_full"] == 5
    assert report["errors_total"] == 5
    # The first failure is logged at once; the four after it, within the same minute, only at the stop.
    assert result.stderr.count("could not be stored") == 2, result.stderr
    assert "1 message(s) could not be stored (last: hit.plate" in result.stderr
    assert "4 more message(s) could not be stored before the stop" in result.stderr

    outbox = open_outbox(tmp_path)
    assert outbox.last_sequence() == report["last"]
    outbox.close()
