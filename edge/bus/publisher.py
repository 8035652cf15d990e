"""ZeroMQ publisher: one thread owns the PUB socket; producers hand it messages through a bounded queue."""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from edge.bus.outbox import SEQUENCE_BLOCK, Outbox, is_stored_topic
from edge.bus.replay import ReplayError, ReplayServer
from edge.bus.schema import SCHEMA_VERSION, encode_header, utc_iso

log = logging.getLogger(__name__)

# How long close() keeps trying to deliver queued messages.
LINGER_MS = 1000
# Minimum seconds between two log lines about failed outbox writes; the count of failures is in each line.
OUTBOX_ERROR_LOG_INTERVAL_S = 60.0


class PublisherError(Exception):
    """The feed socket, the outbox or the replay socket could not be opened."""


@dataclass(frozen=True)
class OutboxSettings:
    path: Path
    max_age_s: float
    max_bytes: int
    replay_endpoint: str = ""  # an empty string turns the replay server off


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    body: dict
    images: tuple[bytes, ...]


class Publisher:
    """Sends `[topic, header JSON, JPEG images...]`; the header gets schema, publisher id, sequence and sent time.

    Sequence numbers are assigned on the socket thread in send order, so a gap in the numbers a subscriber
    receives means it missed messages, or that the daemon restarted and skipped the unused rest of a reserved
    block. ZeroMQ PUB never blocks: a slow subscriber loses messages at its high-water mark. With `outbox` set,
    hits and plates are stored before they are sent, a replay server can resend them, and sequence numbers
    continue across restarts.
    """

    def __init__(self, endpoint: str, publisher_id: str, queue_size: int = 1000, context: zmq.Context | None = None,
                 outbox: OutboxSettings | None = None):
        self.endpoint = endpoint
        self.publisher_id = publisher_id
        self.outbox_settings = outbox
        self.sequence = 0  # the last sequence assigned; start() resumes it from the outbox
        self.dropped = 0  # messages rejected because the queue was full
        self.sent = 0
        self.outbox_errors = 0  # failed outbox writes; those messages were still sent
        self._outbox: Outbox | None = None
        self._reserved_through = 0
        self._last_outbox_error_log = float("-inf")
        self._replay: ReplayServer | None = None
        self._context = context or zmq.Context.instance()
        self._queue: queue.Queue[_Outgoing | None] = queue.Queue(maxsize=queue_size)
        self._bound = threading.Event()
        self._bind_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> None:
        """Open the outbox, bind the feed socket and start the replay server; raise PublisherError on failure."""
        self._thread.start()
        self._bound.wait()
        if self._bind_error is not None:
            raise PublisherError(self._bind_error)
        settings = self.outbox_settings
        if settings is not None and settings.replay_endpoint:
            replay = ReplayServer(settings.replay_endpoint, settings.path, self._context)
            try:
                replay.start()
            except ReplayError as error:
                self.close()
                raise PublisherError(str(error)) from None
            self._replay = replay

    def publish(self, topic: str, body: dict, images: list[bytes] | tuple[bytes, ...] = ()) -> bool:
        """Queue a message with its JPEG images; return False and count it as dropped when the queue is full."""
        try:
            self._queue.put_nowait(_Outgoing(topic, body, tuple(images)))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self) -> None:
        """Send what is queued, then close the socket, the outbox and the replay server."""
        if self._replay is not None:
            self._replay.close()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=LINGER_MS / 1000 + 5)

    def _run(self) -> None:
        # The outbox connection is opened, used and closed on this thread only, as sqlite3 requires by default.
        if self.outbox_settings is not None and not self._open_outbox(self.outbox_settings):
            self._bound.set()
            return
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
            self._close_outbox()
            self._bound.set()
            return
        log.info("publishing on %s as %s, first sequence %d", self.endpoint, self.publisher_id, self.sequence + 1)
        self._bound.set()
        try:
            while (message := self._queue.get()) is not None:
                self._send(socket, message)
        finally:
            socket.close()
            self._close_outbox()

    def _open_outbox(self, settings: OutboxSettings) -> bool:
        try:
            self._outbox = Outbox(settings.path, settings.max_age_s, settings.max_bytes)
            self.sequence = self._outbox.next_sequence() - 1
        except (sqlite3.Error, OSError) as error:
            self._bind_error = (
                f"cannot open the outbox {settings.path}: {error}; set publisher.outbox_path to a file in a "
                "writable folder, or set EDGE_DATA_DIR"
            )
            self._close_outbox()
            return False
        self._reserved_through = self.sequence
        log.info("outbox %s: resuming after sequence %d", settings.path, self.sequence)
        return True

    def _close_outbox(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

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
        if self._outbox is not None:
            self._store(message.topic, frames[1], message.images)
        try:
            socket.send_multipart(frames, flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1
        except zmq.ZMQError as error:
            self.dropped += 1
            log.error("send of %s #%d on %s failed: %s", message.topic, self.sequence, self.endpoint, error)

    def _store(self, topic: str, header: bytes, images: tuple[bytes, ...]) -> None:
        """Reserve the sequence and store hits and plates before they are sent; a failure is counted, not raised."""
        outbox = self._outbox
        try:
            # Reserving a block at a time costs one write per SEQUENCE_BLOCK messages, and a restart skips
            # at most the unused rest of the block.
            if self.sequence > self._reserved_through:
                outbox.reserve_through(self.sequence + SEQUENCE_BLOCK - 1)
                self._reserved_through = self.sequence + SEQUENCE_BLOCK - 1
            if is_stored_topic(topic):
                outbox.write(self.sequence, topic, header, images)
        except sqlite3.Error as error:
            self.outbox_errors += 1
            now = time.monotonic()
            if now - self._last_outbox_error_log >= OUTBOX_ERROR_LOG_INTERVAL_S:
                self._last_outbox_error_log = now
                log.error("outbox %s: cannot store %s #%d: %s; sending it anyway, but it cannot be replayed "
                          "(%d outbox error(s) so far); free disk space or check publisher.outbox_path",
                          outbox.path, topic, self.sequence, error, self.outbox_errors)
