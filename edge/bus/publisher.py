"""ZeroMQ publisher: one thread owns the PUB socket; producers hand it messages through a bounded queue."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import zmq

from edge.bus.schema import SCHEMA_VERSION, encode_header, utc_iso

log = logging.getLogger(__name__)

# How long close() keeps trying to deliver queued messages.
LINGER_MS = 1000


class PublisherError(Exception):
    """The feed socket could not be opened."""


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    body: dict
    images: tuple[bytes, ...]


class Publisher:
    """Sends `[topic, header JSON, JPEG images...]`; the header gets schema, publisher id, sequence and sent time.

    Sequence numbers are assigned on the socket thread in send order, so a gap in the numbers a subscriber
    receives means it missed messages. ZeroMQ PUB never blocks: a slow subscriber loses messages at its high-water mark.
    """

    def __init__(self, endpoint: str, publisher_id: str, queue_size: int = 1000, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.publisher_id = publisher_id
        self.sequence = 0
        self.dropped = 0  # messages rejected because the queue was full
        self.sent = 0
        self._context = context or zmq.Context.instance()
        self._queue: queue.Queue[_Outgoing | None] = queue.Queue(maxsize=queue_size)
        self._bound = threading.Event()
        self._bind_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._bound.wait()
        if self._bind_error is not None:
            raise PublisherError(self._bind_error)

    def publish(self, topic: str, body: dict, images: list[bytes] | tuple[bytes, ...] = ()) -> bool:
        """Queue a message with its JPEG images; return False and count it as dropped when the queue is full."""
        try:
            self._queue.put_nowait(_Outgoing(topic, body, tuple(images)))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self) -> None:
        """Send what is queued, then close the socket."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=LINGER_MS / 1000 + 5)

    def _run(self) -> None:
        socket = self._context.socket(zmq.PUB)
        socket.setsockopt(zmq.LINGER, LINGER_MS)
        try:
            socket.bind(self.endpoint)
        except zmq.ZMQError as error:
            self._bind_error = (
                f"cannot bind the feed socket to {self.endpoint}: {error}; "
                "choose a free address in publisher.endpoint or stop the process using it"
            )
            socket.close(linger=0)
            self._bound.set()
            return
        log.info("publishing on %s as %s", self.endpoint, self.publisher_id)
        self._bound.set()
        try:
            while (message := self._queue.get()) is not None:
                self._send(socket, message)
        finally:
            socket.close()

    def _send(self, socket: zmq.Socket, message: _Outgoing) -> None:
        self.sequence += 1
        header = {
            "schema": SCHEMA_VERSION,
            "publisher_id": self.publisher_id,
            "sequence": self.sequence,
            "sent_at": utc_iso(time.time()),
            **message.body,
        }
        frames = [message.topic.encode("utf-8"), encode_header(header), *message.images]
        try:
            socket.send_multipart(frames, flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1
        except zmq.ZMQError as error:
            self.dropped += 1
            log.error("send of %s #%d on %s failed: %s", message.topic, self.sequence, self.endpoint, error)
