"""Replay over real ZeroMQ sockets on 127.0.0.1: the ROUTER server, the gap filling, and `edge subscribe --from-seq`."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
import zmq

from edge.bus.outbox import Outbox, OutboxReader
from edge.bus.publisher import OutboxSettings, Publisher, PublisherError
from edge.bus.replay import MAX_RANGE, ReplayEnd, ReplayServer, subscribe_from
from edge.bus.schema import encode_header
from tests.conftest import edge_command, free_port, wait_until


def local_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def publisher(tmp_path):
    pub = Publisher(local_endpoint(), "box-replay", queue_size=1000,
                    outbox=OutboxSettings(tmp_path / "outbox.sqlite", 3600, 10**9, local_endpoint()))
    pub.start()
    yield pub
    pub.close()


def request(endpoint: str, payload: bytes, timeout_ms: int = 10_000) -> list[list[bytes]]:
    """Send one raw request; return every reply message up to and including replay.end or replay.error."""
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    try:
        socket.send(payload)
        replies = []
        while True:
            assert socket.poll(timeout_ms), f"no reply from {endpoint} after {len(replies)} message(s)"
            frames = socket.recv_multipart()
            replies.append(frames)
            if frames[0] in (b"replay.end", b"replay.error"):
                return replies
    finally:
        socket.close()


def join_subscriber(publisher: Publisher) -> zmq.Socket:
    """Return a SUB socket for every topic whose subscription is in effect: a health message has arrived."""
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(publisher.endpoint)
    while not socket.poll(50):
        publisher.publish("health", {"handshake": True})
    while socket.poll(200):
        socket.recv_multipart()
    return socket


def publish_mixed(publisher: Publisher, count: int) -> None:
    """Publish `count` rounds of hit.plate, det, hit.face and plate, each hit with two distinct images."""
    for index in range(count):
        images = [b"\xff\xd8snapshot-%d" % index, bytes(range(256)) * (index + 1)]
        assert wait_until(lambda: publisher.publish("hit.plate", {"index": index, "plate": "京A1234"}, images), 10)
        assert wait_until(lambda: publisher.publish("det", {"index": index}), 10)
        assert wait_until(lambda: publisher.publish("hit.face", {"index": index}, images), 10)
        assert wait_until(lambda: publisher.publish("plate", {"index": index}, images[:1]), 10)


def test_replay_returns_range_byte_identical(publisher):
    live = join_subscriber(publisher)
    publish_mixed(publisher, 5)
    sent = [live.recv_multipart() for _ in range(20)]
    live.close()
    stored = [frames for frames in sent if frames[0] != b"det"]
    first = json.loads(stored[2][1])["sequence"]
    last = json.loads(stored[9][1])["sequence"]

    replies = request(publisher.outbox_settings.replay_endpoint, json.dumps({"from": first, "to": last}).encode())

    expected = [frames for frames in stored if first <= json.loads(frames[1])["sequence"] <= last]
    assert len(expected) == 8
    assert replies[:-1] == expected
    assert replies[-1][0] == b"replay.end"
    end = json.loads(replies[-1][1])
    assert end["from"] == first
    assert end["to"] == last
    assert end["count"] == 8
    assert end["oldest_available"] == json.loads(stored[0][1])["sequence"]
    assert end["newest_available"] == json.loads(stored[-1][1])["sequence"]


def test_replay_without_to_is_capped(publisher):
    publish_mixed(publisher, 2)
    assert wait_until(lambda: publisher.sent == 8, 10)

    replies = request(publisher.outbox_settings.replay_endpoint, b'{"from": 0}')
    assert [frames[0] for frames in replies[:-1]] == [b"hit.plate", b"hit.face", b"plate"] * 2
    end = json.loads(replies[-1][1])
    assert end["to"] == MAX_RANGE
    assert end["count"] == 6

    capped = request(publisher.outbox_settings.replay_endpoint, b'{"from": 5, "to": 99999}')
    assert json.loads(capped[-1][1])["to"] == 5 + MAX_RANGE


def test_replay_of_empty_range(publisher):
    replies = request(publisher.outbox_settings.replay_endpoint, b'{"from": 100, "to": 200}')
    assert len(replies) == 1
    assert json.loads(replies[0][1]) == {"from": 100, "to": 200, "count": 0, "oldest_available": None,
                                         "newest_available": None, "expired_through": 0}


@pytest.mark.parametrize("payload, error", [
    (b"not json", "request is not UTF-8 JSON"),
    (b"\xff\xfe", "request is not UTF-8 JSON"),
    (b"[1, 2]", "is not a JSON object"),
    (b"{}", "request has no 'from'"),
    (b'{"form": 1}', "unknown request field(s) form"),
    (b'{"from": -1}', "invalid 'from' -1"),
    (b'{"from": "3"}', "invalid 'from' \"3\""),
    (b'{"from": true}', "invalid 'from' true"),
    (b'{"from": 1.5}', "invalid 'from' 1.5"),
    (b'{"from": NaN}', "invalid 'from' NaN"),
    (b'{"from": 9, "to": 3}', "'to' (3) is lower than 'from' (9)"),
    # Beyond SQLite's integers, which the outbox query cannot take.
    (b'{"from": 10000000000000000000000}', "invalid 'from' 10000000000000000000000"),
    (b'{"from": 1, "to": 9223372036854775808}', "invalid 'to' 9223372036854775808"),
])
def test_bad_request_gets_error(publisher, payload, error):
    replies = request(publisher.outbox_settings.replay_endpoint, payload)
    assert len(replies) == 1
    assert replies[0][0] == b"replay.error"
    assert error in json.loads(replies[0][1])["error"]


def test_replay_near_largest_sequence(publisher):
    endpoint = publisher.outbox_settings.replay_endpoint
    # Without a 'to', the range ends at the largest sequence rather than past it.
    (reply,) = request(endpoint, b'{"from": 9223372036854775807}')
    assert reply[0] == b"replay.end"
    assert json.loads(reply[1])["to"] == 9223372036854775807
    assert request(endpoint, b'{"from": 1}')[-1][0] == b"replay.end", "the server still answers"


def test_server_survives_failing_request(publisher, monkeypatch, caplog):
    endpoint = publisher.outbox_settings.replay_endpoint
    calls = []

    def fail_once(*_args):
        calls.append(1)
        if len(calls) == 1:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return []

    monkeypatch.setattr(OutboxReader, "read_range", fail_once)

    (failed,) = request(endpoint, b'{"from": 1}')
    (answered,) = request(endpoint, b'{"from": 1}')

    assert failed[0] == b"replay.error"
    assert "OverflowError" in json.loads(failed[1])["error"]
    assert answered[0] == b"replay.end"
    assert "replay request from client" in caplog.text


def test_server_survives_bad_request(publisher):
    endpoint = publisher.outbox_settings.replay_endpoint
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    socket.send_multipart([b"a", b"b", b"c"])
    assert socket.poll(10_000)
    topic, body = socket.recv_multipart()
    socket.close()
    assert topic == b"replay.error"
    assert "request has 3 frames" in json.loads(body)["error"]
    assert json.loads(request(endpoint, b'{"from": 1}')[-1][1])["count"] == 0


def test_replay_endpoint_in_use_stops_start(tmp_path):
    endpoint = local_endpoint()
    holder = zmq.Context.instance().socket(zmq.ROUTER)
    holder.bind(endpoint)
    publisher = Publisher(local_endpoint(), "box", outbox=OutboxSettings(tmp_path / "o.sqlite", 3600, 10**9, endpoint))
    try:
        with pytest.raises(PublisherError, match=f"cannot bind the replay socket to {endpoint}"):
            publisher.start()
    finally:
        holder.close(linger=0)
    # start() closed the feed socket again, so its endpoint is free for the next try.
    retry = Publisher(publisher.endpoint, "box")
    retry.start()
    retry.close()


def test_subscribe_from_fills_live_gap(tmp_path):
    """A stored message that the live feed lacked is fetched when the next live message shows the gap."""
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, 3600, 10**9)
    headers = {sequence: encode_header({"schema": 1, "publisher_id": "box", "sequence": sequence})
               for sequence in range(1, 7)}
    outbox.write(3, "hit.plate", headers[3], [b"three"])
    replay = ReplayServer(local_endpoint(), path)
    replay.start()
    feed = zmq.Context.instance().socket(zmq.XPUB)
    feed.setsockopt(zmq.LINGER, 0)
    feed_endpoint = local_endpoint()
    feed.bind(feed_endpoint)
    try:
        messages = subscribe_from(feed_endpoint, replay.endpoint, ["hit."], first=1, timeout_s=10)
        assert next(messages).header["sequence"] == 3

        # Handshake: XPUB receives the subscriptions, so everything sent from now on reaches the subscriber.
        assert {feed.recv() for _ in range(2)} == {b"\x01hit.", b"\x01health"}
        outbox.write(5, "hit.face", headers[5], [b"five"])
        feed.send_multipart([b"hit.plate", headers[3], b"three"])  # a duplicate of the replayed message
        feed.send_multipart([b"health", headers[4]])
        feed.send_multipart([b"hit.plate", headers[6], b"six"])

        rest = [next(messages) for _ in range(2)]
        assert [(m.topic, m.header["sequence"], m.images) for m in rest] == [
            ("hit.face", 5, [b"five"]), ("hit.plate", 6, [b"six"])]
        messages.close()
    finally:
        feed.close()
        replay.close()
        outbox.close()


def test_subscribe_cli_from_seq_replays_then_follows(publisher, tmp_path):
    hit_topics = ("hit.plate", "hit.face")
    for index in range(20):
        assert publisher.publish(hit_topics[index % 2], {"index": index}, [b"\xff\xd8%d" % index])
        assert publisher.publish("det", {"index": index})
    assert wait_until(lambda: publisher.sent == 40, 10)

    command = [*edge_command(), "subscribe", "--endpoint", publisher.endpoint,
               "--replay-endpoint", publisher.outbox_settings.replay_endpoint, "--from-seq", "1",
               "--topic", "hit.", "--count", "25", "--timeout", "30"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        # The 20 stored hits printed show that the replay is done and the live socket connected before it.
        assert wait_until(lambda: len(lines) >= 20, 30), lines
        for index in range(20, 25):
            assert publisher.publish(hit_topics[index % 2], {"index": index}, [b"\xff\xd8%d" % index])
        # Health keeps the live feed moving, so a hit lost while the subscription took effect shows as a gap.
        deadline = time.monotonic() + 30
        while not wait_until(lambda: process.poll() is not None, 0.1) and time.monotonic() < deadline:
            publisher.publish("health", {})
        process.wait(5)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)

    stderr = process.stderr.read()
    assert process.returncode == 0, stderr
    assert "WARNING" not in stderr
    records = [json.loads(line) for line in lines]
    assert [record["index"] for record in records] == list(range(25))
    assert all(record["topic"] in hit_topics for record in records)
    sequences = [record["sequence"] for record in records]
    assert sequences == sorted(set(sequences))
    assert records[0]["jpeg_bytes"] == [3]


@pytest.mark.parametrize("oldest, expired_through, expected", [
    (10, 0, None),  # sequences 1..9 were det or health, never stored
    (10, 4, 4),
    (10, 30, 9),
    (10, None, 9),  # a daemon that does not report expiry: any gap may have expired
    (1, 0, None),
    (None, 0, None),
])
def test_expired_part_of_gap(oldest, expired_through, expected):
    end = ReplayEnd(1, 20, 0, oldest, 20, expired_through)

    assert end.expired_before(1) == expected


def test_subscribe_cli_rejects_huge_from_seq():
    completed = subprocess.run([*edge_command(), "subscribe", "--from-seq", "9223372036854775808"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "9223372036854775808 must be 9223372036854775807 or less" in completed.stderr
