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
import zmq.utils.monitor

from edge.bus.heartbeat import Heartbeat
from edge.bus.outbox import SEQUENCE_BLOCK, Outbox, is_stored_topic
from edge.bus.replay import ReplayError, ReplayServer
from edge.bus.schema import SCHEMA_VERSION, encode_header, utc_iso

log = logging.getLogger(__name__)

# How long close() keeps trying to deliver queued messages.
LINGER_MS = 1000
# Minimum seconds between two log lines about the same kind of failure, such as failed outbox writes. Each
# line contains the number of failures since the previous one.
REPEAT_LOG_INTERVAL_S = 60.0
# How often the socket thread, when no message waits, reads subscription and connection events.
EVENT_POLL_S = 0.2
# libzmq's default send high-water mark, in messages per subscriber.
DEFAULT_SEND_HWM = 1000


class PublisherError(Exception):
    """The feed socket, the outbox or the replay socket could not be opened."""


@dataclass(frozen=True)
class OutboxSettings:
    path: Path
    max_age_s: float
    max_bytes: int
    replay_endpoint: str = ""  # an empty string turns the replay server off


class RepeatThrottle:
    """A counter of one repeating failure that makes a log line due at most once per `interval_s`."""

    def __init__(self, interval_s: float = REPEAT_LOG_INTERVAL_S, clock=time.monotonic):
        self.interval_s = interval_s
        self._clock = clock
        self._last_line = float("-inf")
        self._pending = 0

    def record(self) -> int:
        """Count one failure; return how many failures the due log line covers, or 0 when no line is due."""
        self._pending += 1
        now = self._clock()
        if now - self._last_line < self.interval_s:
            return 0
        self._last_line = now
        return self.take_pending()

    def take_pending(self) -> int:
        """Return the failures not yet covered by a log line, and start counting again from 0."""
        pending, self._pending = self._pending, 0
        return pending


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    body: dict
    images: tuple[bytes, ...]


class Publisher:
    """Sends `[topic, header JSON, JPEG images...]`; the header gets schema, publisher id, sequence and sent time.

    Sequence numbers are assigned on the socket thread in send order, so a gap in the numbers a subscriber
    receives means it missed messages, or that the daemon restarted and skipped the unused rest of a reserved
    block. Sending never waits for a subscriber: a subscriber whose queue contains `send_hwm` messages misses the
    next ones, and `hwm_overflows` counts how often that began. With `outbox` set, hits and plates are stored
    before they are sent, a replay server can resend them, and sequence numbers continue across restarts.
    """

    def __init__(self, endpoint: str, publisher_id: str, queue_size: int = 1000, context: zmq.Context | None = None,
                 outbox: OutboxSettings | None = None, send_hwm: int = DEFAULT_SEND_HWM,
                 heartbeat: Heartbeat | None = None):
        self.endpoint = endpoint
        self.publisher_id = publisher_id
        self.outbox_settings = outbox
        self.send_hwm = send_hwm
        self.heartbeat = heartbeat or Heartbeat()
        self.sequence = 0  # the last sequence assigned; start() resumes it from the outbox
        self.dropped = 0  # messages rejected because the queue was full, or whose send failed
        self.sent = 0
        self.hwm_overflows = 0  # sends that found a subscriber's queue full; see _send_frames
        self.subscribers = 0  # connected subscriber sockets
        self.outbox_errors = 0  # failed outbox writes; those messages were still sent
        # (sent, sequence) after the last finished send, replaced as one tuple. counters() runs on other threads
        # and reads this, so that it never reports a sequence whose message is still being sent.
        self._finished = (0, 0)
        self._outbox: Outbox | None = None
        self._reserved_through = 0
        self._outbox_error_log = RepeatThrottle()
        self._hwm_log = RepeatThrottle()
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
            replay = ReplayServer(settings.replay_endpoint, settings.path, self._context, self.heartbeat)
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

    def counters(self) -> dict:
        """Return the `publisher` object of the `health` message."""
        outbox = self._outbox
        sent, sequence = self._finished
        return {"sent": sent, "dropped": self.dropped, "hwm_overflows": self.hwm_overflows,
                "outbox_errors": self.outbox_errors, "sequence": sequence, "subscribers": self.subscribers,
                "outbox_messages": outbox.stored_messages if outbox is not None else None}

    def close(self) -> None:
        """Send what is queued, then close the socket, the outbox and the replay server."""
        if self._replay is not None:
            self._replay.close()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=LINGER_MS / 1000 + 5)

    def _open_socket(self) -> zmq.Socket | None:
        # XPUB instead of PUB, because only XPUB with NODROP reports a subscriber at its high-water mark.
        socket = self._context.socket(zmq.XPUB)
        socket.setsockopt(zmq.LINGER, LINGER_MS)
        socket.setsockopt(zmq.SNDHWM, self.send_hwm)
        socket.setsockopt(zmq.XPUB_NODROP, 1)
        self.heartbeat.apply(socket)
        try:
            socket.bind(self.endpoint)
        except zmq.ZMQError as error:
            self._bind_error = (
                f"cannot bind the feed socket to {self.endpoint}: {error}; "
                "choose a free address in publisher.endpoint or stop the process using it"
            )
            socket.close(linger=0)
            return None
        return socket

    def _run(self) -> None:
        # The outbox connection is opened, used and closed on this thread only, as sqlite3 requires by default.
        if self.outbox_settings is not None and not self._open_outbox(self.outbox_settings):
            self._bound.set()
            return
        socket = self._open_socket()
        if socket is None:
            self._close_outbox()
            self._bound.set()
            return
        monitor = socket.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        log.info("publishing on %s as %s, first sequence %d, send high-water mark %d", self.endpoint,
                 self.publisher_id, self.sequence + 1, self.send_hwm)
        self._bound.set()
        try:
            while True:
                try:
                    message = self._queue.get(timeout=EVENT_POLL_S)
                except queue.Empty:
                    message = _IDLE
                self._read_events(socket, monitor)
                if message is None:
                    break
                if message is not _IDLE:
                    self._send(socket, message)
        finally:
            self._log_pending_repeats()
            socket.disable_monitor()
            monitor.close(linger=0)
            socket.close()
            self._close_outbox()

    def _read_events(self, socket: zmq.Socket, monitor: zmq.Socket) -> None:
        """Count connected subscribers, and discard the subscription messages that XPUB passes up."""
        while monitor.poll(0):
            event = zmq.utils.monitor.recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_ACCEPTED:
                self.subscribers += 1
            elif event == zmq.EVENT_DISCONNECTED:
                self.subscribers = max(0, self.subscribers - 1)
        while socket.poll(0, zmq.POLLIN):
            socket.recv_multipart()

    def _open_outbox(self, settings: OutboxSettings) -> bool:
        is_new = not Path(settings.path).exists()
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
        self._finished = (self.sent, self.sequence)
        if is_new:
            # The outbox stores the last sequence number, so without it the numbering starts over.
            log.warning("outbox %s did not exist (a new box, or a deleted file) and was created: sequence "
                        "numbers start again at 1, so subscribers that remember a higher sequence see it reset, "
                        "and replay has no older messages", settings.path)
        else:
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
            self._send_frames(socket, message.topic, frames)
            self.sent += 1
        except zmq.ZMQError as error:
            self.dropped += 1
            log.error("send of %s #%d on %s failed: %s", message.topic, self.sequence, self.endpoint, error)
        self._finished = (self.sent, self.sequence)

    def _send_frames(self, socket: zmq.Socket, topic: str, frames: list[bytes]) -> None:
        """Send to every subscriber with room, and count the send when a subscriber's queue was full.

        Plain PUB drops at the high-water mark without a word. XPUB with NODROP instead refuses the message
        (EAGAIN) when any subscriber of its topic has a full queue, and then no subscriber gets it. Sending only in
        that mode would count exactly, but one hung subscriber would cost every other one the feed until the
        heartbeat dropped it, again after each reconnect. So a refused message is counted, then sent again
        with NODROP off: every subscriber with room gets it, as with PUB, and only the full ones miss it.

        NOTE: the count is a lower bound on lost messages. After that second send libzmq skips the full
        subscriber, silently, until it has read its queue down to the low-water mark (about half of
        send_hwm), so one overflow usually costs that subscriber several messages. libzmq does not say which
        subscriber overflowed.
        """
        try:
            socket.send_multipart(frames, flags=zmq.NOBLOCK)
            return
        except zmq.Again:
            pass
        self.hwm_overflows += 1
        socket.setsockopt(zmq.XPUB_NODROP, 0)
        try:
            socket.send_multipart(frames, flags=zmq.NOBLOCK)
        finally:
            socket.setsockopt(zmq.XPUB_NODROP, 1)
        count = self._hwm_log.record()
        if count:
            log.warning("%d overflow(s) (last at %s #%d): a subscriber on %s had %d messages queued, the send "
                        "high-water mark, and missed messages; it reads too slowly or has stalled: speed it up, "
                        "or raise publisher.send_hwm to absorb longer pauses", count, topic, self.sequence,
                        self.endpoint, self.send_hwm)

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
            else:
                # health goes out every few seconds, so old messages expire on time even when no hit comes.
                outbox.apply_retention_if_due()
        except sqlite3.Error as error:
            self.outbox_errors += 1
            count = self._outbox_error_log.record()
            if count:
                log.error("outbox %s: %d message(s) could not be stored (last: %s #%d: %s); they were sent but "
                          "cannot be replayed; free disk space or check publisher.outbox_path", outbox.path,
                          count, topic, self.sequence, error)

    def _log_pending_repeats(self) -> None:
        """Log the failures counted since the last rate-limited line, so that a stop loses none of them."""
        if count := self._hwm_log.take_pending():
            log.warning("%d more overflow(s) at the send high-water mark on %s before the stop", count,
                        self.endpoint)
        if (count := self._outbox_error_log.take_pending()) and self._outbox is not None:
            log.error("outbox %s: %d more message(s) could not be stored before the stop", self._outbox.path,
                      count)


# Marks a wake-up of the socket thread with no message waiting.
_IDLE = _Outgoing("", {}, ())
