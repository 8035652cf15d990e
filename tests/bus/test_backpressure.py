"""Slow and vanished subscribers on real ZeroMQ sockets: high-water-mark overflows and heartbeats."""

from __future__ import annotations

import socket
import threading

import pytest
import zmq

from edge.bus.heartbeat import Heartbeat
from edge.bus.publisher import Publisher, RepeatThrottle
from edge.bus.schema import decode_header
from tests.conftest import free_port, wait_until
from tests.support.stall_proxy import StallProxy

FLOOD_MESSAGES = 300
# Large enough that a subscriber that stops reading fills the kernel's TCP buffers within the flood.
FLOOD_IMAGE = b"\xff\xd8" + b"x" * 100_000


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_counts_between_lines():
    clock = FakeClock()
    throttle = RepeatThrottle(interval_s=60, clock=clock)
    assert throttle.record() == 1
    assert throttle.record() == 0
    assert throttle.record() == 0
    clock.now += 59
    assert throttle.record() == 0
    clock.now += 1
    # The line due now covers the three failures since the previous line and this one.
    assert throttle.record() == 4
    assert throttle.record() == 0
    assert throttle.take_pending() == 1
    assert throttle.take_pending() == 0


def subscriber_socket(endpoint: str, receive_hwm: int) -> zmq.Socket:
    subscriber = zmq.Context.instance().socket(zmq.SUB)
    subscriber.setsockopt(zmq.LINGER, 0)
    subscriber.setsockopt(zmq.RCVHWM, receive_hwm)
    subscriber.setsockopt(zmq.SUBSCRIBE, b"")
    subscriber.connect(endpoint)
    return subscriber


def handshake(publisher: Publisher, sockets: list[zmq.Socket]) -> None:
    """Publish until every socket received a message, so every subscription is in effect; then empty them."""
    pending = list(sockets)
    while pending:
        publisher.publish("health", {"handshake": True})
        pending = [subscriber for subscriber in pending if not subscriber.poll(50)]
    for subscriber in sockets:
        while subscriber.poll(200):
            subscriber.recv_multipart()


def read_sequences(subscriber: zmq.Socket, idle_ms: int, sequences: list[int] | None = None) -> list[int]:
    """Append the sequence of each flood message to `sequences` until `idle_ms` passes with no message."""
    sequences = [] if sequences is None else sequences
    while subscriber.poll(idle_ms):
        frames = subscriber.recv_multipart()
        header = decode_header(frames[1])
        if "index" in header:
            sequences.append(header["sequence"])
    return sequences


@pytest.fixture
def flood_publisher():
    publisher = Publisher(f"tcp://127.0.0.1:{free_port()}", "box-flood", queue_size=FLOOD_MESSAGES + 10,
                          send_hwm=10)
    publisher.start()
    yield publisher
    publisher.close()


def test_stalled_subscriber_overflow_counted(flood_publisher):
    """A subscriber that stops reading loses messages at its high-water mark; one that keeps up gets them all."""
    publisher = flood_publisher
    stalled = subscriber_socket(publisher.endpoint, receive_hwm=10)
    fast = subscriber_socket(publisher.endpoint, receive_hwm=10)
    handshake(publisher, [stalled, fast])
    fast_sequences: list[int] = []
    reader = threading.Thread(target=read_sequences, args=(fast, 3000, fast_sequences))
    reader.start()

    # Publishing in steps of 5 that the fast subscriber has read keeps its queue below the mark of 10, so
    # only the stalled subscriber can overflow.
    for step in range(0, FLOOD_MESSAGES, 5):
        for index in range(step, step + 5):
            assert publisher.publish("det", {"index": index}, [FLOOD_IMAGE])
        assert wait_until(lambda: len(fast_sequences) >= step + 5, 10), f"fast subscriber stuck at {step}"
    reader.join(30)
    stalled_sequences = read_sequences(stalled, idle_ms=1000)
    stalled.close()
    fast.close()

    first = fast_sequences[0]
    assert publisher.hwm_overflows > 0
    assert publisher.dropped == 0
    assert fast_sequences == list(range(first, first + FLOOD_MESSAGES))
    assert len(stalled_sequences) < FLOOD_MESSAGES
    # Each overflow cost the stalled subscriber at least the refused message.
    assert FLOOD_MESSAGES - len(stalled_sequences) >= publisher.hwm_overflows
    assert publisher.counters()["hwm_overflows"] == publisher.hwm_overflows


def test_hwm_overflows_logged_once(flood_publisher, caplog):
    publisher = flood_publisher
    stalled = subscriber_socket(publisher.endpoint, receive_hwm=10)
    handshake(publisher, [stalled])
    # Flood in rounds until the queue has overflowed twice: how many messages the kernel's socket buffers
    # absorb first differs between machines.
    with caplog.at_level("WARNING", logger="edge.bus.publisher"):
        for round_number in range(10):
            for index in range(FLOOD_MESSAGES):
                publisher.publish("det", {"index": round_number * FLOOD_MESSAGES + index}, [FLOOD_IMAGE])
            assert wait_until(lambda: publisher.sent >= (round_number + 1) * FLOOD_MESSAGES, 30)
            if publisher.hwm_overflows > 1:
                break
        publisher.close()
    stalled.close()
    lines = [r.getMessage() for r in caplog.records if "high-water mark" in r.getMessage()]
    assert publisher.hwm_overflows > 1
    # One line at the first overflow, and one at the stop for the rest of the minute.
    assert len(lines) == 2, lines
    assert lines[0].startswith("1 overflow(s) (last at det #")
    assert lines[1].startswith(f"{publisher.hwm_overflows - 1} more overflow(s)")


def test_subscriber_counted_and_gone():
    publisher = Publisher(f"tcp://127.0.0.1:{free_port()}", "box-count")
    publisher.start()
    try:
        subscriber = subscriber_socket(publisher.endpoint, receive_hwm=100)
        assert wait_until(lambda: publisher.subscribers == 1, 10)
        subscriber.close()
        assert wait_until(lambda: publisher.subscribers == 0, 10)
    finally:
        publisher.close()


def test_heartbeat_drops_silent_subscriber():
    """A subscriber whose connection stays open but carries nothing is disconnected by the heartbeat."""
    port = free_port()
    publisher = Publisher(f"tcp://127.0.0.1:{port}", "box-heartbeat",
                          heartbeat=Heartbeat(interval_s=0.1, timeout_s=0.5, ttl_s=1.0))
    publisher.start()
    proxy = StallProxy(port)
    # The subscriber gets no heartbeat of its own, so only the publisher can notice the silence.
    subscriber = subscriber_socket(f"tcp://127.0.0.1:{proxy.port}", receive_hwm=100)
    try:
        assert wait_until(lambda: publisher.subscribers == 1, 10)
        proxy.stall()
        assert wait_until(lambda: publisher.subscribers == 0, 10)
    finally:
        subscriber.close()
        proxy.close()
        publisher.close()


def test_heartbeat_set_on_replay_socket(tmp_path):
    """The replay ROUTER gets a heartbeat too: it closes a client connection that stalled after a reply."""
    from edge.bus.outbox import Outbox
    from edge.bus.replay import ReplayServer

    Outbox(tmp_path / "outbox.sqlite", 3600, 10**9).close()
    port = free_port()
    server = ReplayServer(f"tcp://127.0.0.1:{port}", tmp_path / "outbox.sqlite",
                          heartbeat=Heartbeat(interval_s=0.1, timeout_s=0.5, ttl_s=1.0))
    server.start()
    proxy = StallProxy(port)
    client = zmq.Context.instance().socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(f"tcp://127.0.0.1:{proxy.port}")
    try:
        client.send(b'{"from": 1}')
        assert client.poll(10_000), "no reply from the replay server"
        client.recv_multipart()
        proxy.stall()
        # The proxy reads nothing while stalled, so its upstream socket shows the server's close as CLOSE_WAIT.
        upstream = proxy._sockets[1]
        assert wait_until(lambda: tcp_state(upstream) == TCP_CLOSE_WAIT, 10)
    finally:
        client.close()
        proxy.close()
        server.close()


TCP_CLOSE_WAIT = 8  # from linux/tcp_states.h


def tcp_state(sock: socket.socket) -> int:
    """Return the Linux TCP state of `sock`: the first byte of struct tcp_info."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


@pytest.mark.parametrize("value, accepted", [(10, True), (1000, True), (1_000_000, True), (9, False),
                                             (0, False), (1_000_001, False)])
def test_send_hwm_config_bounds(value, accepted):
    from pydantic import ValidationError

    from edge.config.site import PublisherConfig

    if accepted:
        assert PublisherConfig(send_hwm=value).send_hwm == value
    else:
        with pytest.raises(ValidationError, match="send_hwm"):
            PublisherConfig(send_hwm=value)

