"""Publisher and subscriber over real ZeroMQ sockets on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import numpy as np
import pytest
import zmq

from edge.bus.publisher import Publisher, PublisherError
from edge.bus.schema import SCHEMA_VERSION, detections_body, utc_iso
from edge.bus.subscriber import subscribe
from edge.runtime.detector import Detections
from tests.conftest import edge_command, free_port, wait_until


def sample_detections() -> Detections:
    return Detections(
        boxes_xyxy=np.array([[10.04, 20.0, 110.0, 220.56]], dtype=np.float32),
        scores=np.array([0.91234], dtype=np.float32),
        class_ids=np.array([0], dtype=np.int64),
    )


def publish_until_received(publisher: Publisher, endpoint: str, topic: str, body: dict, images: tuple = (),
                           wanted: int = 1, topics: list[str] | None = None):
    """Publish repeatedly until the subscriber has `wanted` messages; PUB drops what it sends before SUB joins."""
    received = []

    def consume():
        for message in subscribe(endpoint, topics if topics is not None else [topic], timeout_s=5):
            received.append(message)
            if len(received) >= wanted:
                return

    consumer = threading.Thread(target=consume)
    consumer.start()
    while consumer.is_alive():
        publisher.publish(topic, body, images)
        time.sleep(0.02)
    return received


@pytest.fixture
def publisher():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint, "box-test", queue_size=100)
    pub.start()
    yield pub
    pub.close()


def test_det_message_layout(publisher):
    body = detections_body("cam-1", 1_700_000_000.25, 768, 432, sample_detections())
    (message,) = publish_until_received(publisher, publisher.endpoint, "det", body, images=(b"\xff\xd8jpeg",))
    assert message.topic == "det"
    header = message.header
    assert header["schema"] == SCHEMA_VERSION
    assert header["publisher_id"] == "box-test"
    assert header["camera_id"] == "cam-1"
    assert header["frame_time"] == "2023-11-14T22:13:20.250Z"
    assert header["frame_size"] == [768, 432]
    assert header["detections"] == [
        {"class": "person", "score": 0.9123, "box_xyxy": [10.0, 20.0, 110.0, 220.6], "track_id": None}
    ]
    assert message.jpeg == b"\xff\xd8jpeg"


def test_sequence_numbers_increase_by_one(publisher):
    messages = publish_until_received(publisher, publisher.endpoint, "health", {"ok": True}, wanted=20)
    sequences = [m.header["sequence"] for m in messages]
    assert sequences == list(range(sequences[0], sequences[0] + 20))


def test_counters_consistent_during_send(publisher, monkeypatch):
    # The health message is built on another thread, which may ask for the counters while a send runs.
    seen = []
    send_frames = publisher._send_frames

    def send_and_read_counters(socket, topic, frames):
        seen.append(publisher.counters())
        send_frames(socket, topic, frames)

    monkeypatch.setattr(publisher, "_send_frames", send_and_read_counters)
    for index in range(3):
        publisher.publish("health", {"index": index})
    assert wait_until(lambda: len(seen) == 3, 10)

    assert [(counters["sent"], counters["sequence"]) for counters in seen] == [(0, 0), (1, 1), (2, 2)]
    assert wait_until(lambda: publisher.counters()["sequence"] == 3, 10)
    assert publisher.counters()["sent"] == 3


def test_topic_filter(publisher):
    publisher.publish("health", {"x": 1})
    messages = publish_until_received(publisher, publisher.endpoint, "det", {"x": 2}, wanted=3, topics=["det"])
    assert {m.topic for m in messages} == {"det"}


def test_full_queue_drops_and_counts():
    pub = Publisher(f"tcp://127.0.0.1:{free_port()}", "box", queue_size=2)
    # Not started: nothing drains the queue, so the third message has no room.
    assert pub.publish("det", {})
    assert pub.publish("det", {})
    assert not pub.publish("det", {})
    assert pub.dropped == 1


def test_endpoint_in_use_is_a_clear_error():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    holder = zmq.Context.instance().socket(zmq.PUB)
    holder.bind(endpoint)
    try:
        with pytest.raises(PublisherError, match=f"cannot bind the feed socket to {endpoint}"):
            Publisher(endpoint, "box").start()
    finally:
        holder.close(linger=0)


def test_utc_iso_format():
    assert utc_iso(0) == "1970-01-01T00:00:00.000Z"


def test_subscribe_cli_prints_json_lines(publisher):
    command = [*edge_command(), "subscribe", "--endpoint", publisher.endpoint, "--topic", "det", "--count", "2",
               "--timeout", "20"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    body = detections_body("cam-7", time.time(), 640, 480, sample_detections())
    while process.poll() is None:
        publisher.publish("det", body, [b"jpegbytes", b"crop"])
        time.sleep(0.05)
    lines = process.stdout.read().splitlines()
    assert process.returncode == 0, process.stderr.read()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["topic"] == "det"
    assert record["camera_id"] == "cam-7"
    assert record["jpeg_bytes"] == [9, 4]


def test_subscribe_cli_times_out_with_error():
    command = [*edge_command(), "subscribe", "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--count", "1",
               "--timeout", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "received 0 of 1 messages" in result.stderr


def test_subscribe_cli_silent_endpoint_fails():
    """Without --count, a timeout with no message at all still exits 1, so health checks can use it."""
    command = [*edge_command(), "subscribe", "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "received no message from tcp://127.0.0.1:" in result.stderr


@pytest.mark.parametrize(("options", "hint"), [
    (["--count", "1"], "check that the daemon runs and that --endpoint is its publisher.endpoint"),
    (["--count", "1", "--topic", "dets"], "and that --topic matches a topic it sends: det, health"),
    ([], "check that the daemon runs and that --endpoint is its publisher.endpoint"),
])
def test_subscribe_cli_silent_feed_hint(options, hint):
    """A subscriber that received nothing printed no advice on what to check."""
    command = [*edge_command(), "subscribe", "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "1",
               *options]

    result = subprocess.run(command, capture_output=True, text=True, timeout=30)

    assert result.returncode == 1
    assert hint in result.stderr
