"""Feed intake of the web service: one thread per daemon feed stores its hits and health in the HitStore.

Each thread subscribes to every topic, because the publisher's sequence counter covers every topic and
only a full subscription shows real gaps. `det` messages are dropped right after their sequence is read.
A gap in the sequence numbers, including the one before the first message after a (re)start, is filled
from the daemon's replay endpoint. The sequence numbers also cover the ZeroMQ slow-joiner problem:
whatever was sent before the subscription took effect shows up as a gap and is replayed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from edge.bus.replay import MAX_RANGE, ReplayEnd, ReplayError, request_replay
from edge.bus.schema import TOPIC_DETECTIONS, TOPIC_HEALTH, utc_iso
from edge.bus.subscriber import FeedMessage
from edge.config.web import FeedSource
from edge.web.store import HitStore, InvalidHitError, StoredHit, StoreError

log = logging.getLogger(__name__)

# Messages kept in the SUB socket before later ones are dropped. A drop shows up as a gap that the replay
# fills, so the limit only bounds memory: 2000 messages with snapshots of about 100 kB take about 200 MB.
RECEIVE_HWM = 2000
# ZeroMQ heartbeats: a PING every HEARTBEAT_IVL_MS, and the connection is dropped and reconnected when
# nothing arrives within HEARTBEAT_TIMEOUT_MS of a PING. Each PING carries HEARTBEAT_TTL_MS, after which
# the daemon drops its side when nothing more arrives from this socket.
HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000
HEARTBEAT_TTL_MS = 6000
RECONNECT_IVL_MAX_MS = 5000
# Largest frame accepted from a feed (ZMQ_MAXMSGSIZE); a larger one disconnects the peer. A full-size 4K
# snapshot at JPEG quality 80 is a few MB, so this bounds memory without rejecting real messages.
MAX_FRAME_BYTES = 32 * 1024 * 1024
# How long the poll loop waits before it checks for close() and for due replay retries.
POLL_INTERVAL_MS = 100
# Messages handled per poll, so that monitor events and close() are seen during a burst.
MAX_MESSAGES_PER_POLL = 500
# Wait for each message of a replay reply. close() can take this long when a replay server stopped replying.
REPLAY_TIMEOUT_S = 5.0
# Back-off between retries of a failed replay: doubled after each failure, up to the maximum.
REPLAY_RETRY_FIRST_S = 1.0
REPLAY_RETRY_MAX_S = 60.0
# Failed replay ranges kept per source for a retry; beyond this they are merged into one range per publisher.
MAX_PENDING_RANGES = 100
# Wait for each thread in close(): a replay request waiting for its reply, plus a margin.
JOIN_TIMEOUT_S = REPLAY_TIMEOUT_S + 5.0
# Invalid messages and store errors are logged the first time and then every this many, because they repeat.
REPEAT_LOG_EVERY = 100

# The publisher writes schema, publisher_id and sequence first in every header (edge/bus/publisher.py), so
# these two fields can be read from a `det` header without parsing its up to 300 detections. A header in
# another layout falls back to a full JSON parse.
_HEADER_PREFIX = re.compile(rb'^\{"schema":\d+,"publisher_id":("(?:[^"\\]|\\.)*"),"sequence":(\d+)[,}]')

_MONITOR_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)


@dataclass(frozen=True)
class SourceStatus:
    """Counters of one feed source since start(); a daemon restart also shows as one gap."""

    endpoint: str
    replay_endpoint: str | None
    state: str  # starting, connecting, connected, disconnected or stopped; from the ZeroMQ socket monitor
    messages_received: int  # live messages of every topic
    hits_stored: int  # new hits stored, live and replayed
    replayed: int  # of hits_stored, those that came from the replay endpoint
    gaps_seen: int  # jumps of the sequence by more than one, including the one before the first message
    replay_failures: int
    restarts: int  # publishers whose sequence went down: they restarted without their outbox
    invalid_messages: int  # messages without a readable header, or that the store rejected
    store_errors: int  # hits and health messages that could not be written, for example on a full disk
    last_error: str | None
    last_message_at: str | None  # UTC ISO 8601


class FeedIntake:
    """Stores the hits and health of `sources` in `store`, one thread per source.

    `on_stored` is called on the intake thread with each newly stored hit, live or replayed. It should
    return quickly, for example by handing the hit to the event loop with call_soon_threadsafe.
    """

    def __init__(self, sources: list[FeedSource], store: HitStore,
                 on_stored: Callable[[StoredHit], None] | None = None, context: zmq.Context | None = None):
        self._context = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._workers = [_SourceWorker(source, store, on_stored, self._context, self._stop) for source in sources]
        self._started = False

    def start(self) -> None:
        if self._started:
            raise RuntimeError("FeedIntake.start() was called twice; create a new FeedIntake")
        self._started = True
        for worker in self._workers:
            worker.thread.start()

    def close(self) -> None:
        """Stop the threads and wait for each for at most JOIN_TIMEOUT_S."""
        self._stop.set()
        for worker in self._workers:
            if worker.thread.is_alive():
                worker.thread.join(timeout=JOIN_TIMEOUT_S)
                if worker.thread.is_alive():
                    log.warning("intake of %s did not stop within %g s", worker.source.endpoint, JOIN_TIMEOUT_S)

    def status(self) -> list[SourceStatus]:
        return [worker.status() for worker in self._workers]


@dataclass
class _Counters:
    """The counters of SourceStatus, changed only under the worker's lock."""

    messages_received: int = 0
    hits_stored: int = 0
    replayed: int = 0
    gaps_seen: int = 0
    replay_failures: int = 0
    restarts: int = 0
    invalid_messages: int = 0
    store_errors: int = 0
    last_error: str | None = None
    last_message_at: str | None = None


@dataclass(frozen=True)
class _PendingRange:
    publisher_id: str
    first: int
    last: int


class _ReplayFailed(Exception):
    """A replay request failed; `remaining` is the part of the range that no request has covered yet."""

    def __init__(self, remaining: _PendingRange, error: ReplayError):
        super().__init__(str(error))
        self.remaining = remaining
        self.error = error


class _SourceWorker:
    """The thread and counters of one feed source."""

    def __init__(self, source: FeedSource, store: HitStore, on_stored: Callable[[StoredHit], None] | None,
                 context: zmq.Context, stop: threading.Event):
        self.source = source
        self._store = store
        self._on_stored = on_stored
        self._context = context
        self._stop = stop
        self.thread = threading.Thread(target=self._run, name=f"intake {source.endpoint}", daemon=True)
        self._lock = threading.Lock()  # guards _state and _counters, which status() reads
        self._state = "starting"
        self._counters = _Counters()
        # The last live sequence of each publisher; every lower one was received or requested from replay.
        self._last_sequences: dict[str, int] = {}
        self._pending: list[_PendingRange] = []
        self._retry_delay_s = REPLAY_RETRY_FIRST_S
        self._retry_at = 0.0  # time.monotonic() of the next retry of the pending ranges
        self._gap_without_replay_logged = False
        self._foreign_replay_logged = False

    def status(self) -> SourceStatus:
        with self._lock:
            return SourceStatus(endpoint=self.source.endpoint, replay_endpoint=self.source.replay_endpoint,
                                state=self._state, **asdict(self._counters))

    def _set_error(self, text: str) -> None:
        with self._lock:
            self._counters.last_error = text

    def _set_state(self, state: str) -> None:
        with self._lock:
            self._state = state

    # The thread

    def _run(self) -> None:
        endpoint = self.source.endpoint
        try:
            socket, monitor = self._open_socket()
        except zmq.ZMQError as error:
            log.error("intake of %s cannot start: %s; check the feed endpoint in the web config", endpoint, error)
            self._set_error(str(error))
            self._set_state("stopped")
            return
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        log.info("intake of %s started, replay from %s", endpoint, self.source.replay_endpoint or "nowhere")
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(POLL_INTERVAL_MS))
                if monitor in ready:
                    self._read_monitor(monitor)
                if socket in ready:
                    self._read_messages(socket)
                if self._pending and time.monotonic() >= self._retry_at:
                    self._retry_pending()
        finally:
            socket.disable_monitor()
            monitor.close()
            socket.close()
            self._set_state("stopped")
            status = self.status()
            log.info("intake of %s stopped: %d message(s) received, %d hit(s) stored (%d replayed), %d gap(s), "
                     "%d replay failure(s), %d publisher restart(s) without outbox, %d invalid message(s), "
                     "%d store error(s)", endpoint, status.messages_received, status.hits_stored, status.replayed,
                     status.gaps_seen, status.replay_failures, status.restarts, status.invalid_messages,
                     status.store_errors)

    def _open_socket(self) -> tuple[zmq.Socket, zmq.Socket]:
        """Return the SUB socket, connecting, and its monitor socket; raise zmq.ZMQError for a bad endpoint."""
        socket = self._context.socket(zmq.SUB)
        monitor = None
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
            socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
            socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
            socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)
            socket.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
            # The empty prefix: every topic, because the sequence counter covers every topic.
            socket.setsockopt(zmq.SUBSCRIBE, b"")
            # The monitor is attached before connect(), so that it reports the first handshake too.
            monitor = socket.get_monitor_socket(_MONITOR_EVENTS)
            self._set_state("connecting")
            socket.connect(self.source.endpoint)
        except zmq.ZMQError:
            if monitor is not None:
                socket.disable_monitor()
                monitor.close()
            socket.close()
            raise
        return socket, monitor

    def _read_monitor(self, monitor: zmq.Socket) -> None:
        while monitor.poll(0, zmq.POLLIN):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if self._state != "connected":
                    log.info("intake of %s: connected", self.source.endpoint)
                self._set_state("connected")
            elif event == zmq.EVENT_DISCONNECTED:
                log.warning("intake of %s: disconnected; reconnecting", self.source.endpoint)
                self._set_state("disconnected")
            else:
                log.warning("intake of %s: ZeroMQ handshake failed; check that the endpoint is a daemon's feed",
                            self.source.endpoint)
                self._set_error("ZeroMQ handshake failed; check that the endpoint is a daemon's feed")

    def _read_messages(self, socket: zmq.Socket) -> None:
        for _ in range(MAX_MESSAGES_PER_POLL):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            with self._lock:
                self._counters.messages_received += 1
                self._counters.last_message_at = utc_iso(time.time())
            try:
                self._handle_live(frames)
            except StoreError as error:
                self._store_failed(error)
            except Exception:
                # A bug triggered by one message must not end the intake of every later hit of this feed.
                log.exception("intake of %s: handling a %r message failed", self.source.endpoint, frames[0][:40])
                with self._lock:
                    self._counters.invalid_messages += 1
            if self._stop.is_set():
                return

    # Sequences and gaps

    def _handle_live(self, frames: list[bytes]) -> None:
        identity = _read_identity(frames)
        if identity is None:
            self._reject(f"message without a readable header (topic {frames[0][:40]!r}, {len(frames)} frame(s))")
            return
        topic, publisher_id, sequence = identity
        previous = self._last_sequences.get(publisher_id)
        if previous is None:
            stored = self._store.last_sequence(publisher_id)
            if stored is not None and sequence <= stored:
                self._restarted(publisher_id, stored, sequence)
                first_missing = 1
            else:
                first_missing = (stored or 0) + 1
            log.info("intake of %s: first message from %s is #%d; %s", self.source.endpoint, publisher_id, sequence,
                     "no hits of it stored yet" if stored is None else f"stored hits run up to #{stored}")
        elif sequence <= previous:
            self._restarted(publisher_id, previous, sequence)
            first_missing = 1
        else:
            first_missing = previous + 1
        self._last_sequences[publisher_id] = sequence
        if sequence > first_missing:
            self._gap(publisher_id, first_missing, sequence - 1)

        if topic == TOPIC_DETECTIONS:
            return
        message = _decode(frames)
        if message is None:
            self._reject(f"{topic} #{sequence} from {publisher_id}: the header is not a JSON object")
        elif topic == TOPIC_HEALTH:
            self._update_health(message)
        else:
            self._store_hit(message, replayed=False)

    def _restarted(self, publisher_id: str, previous: int, sequence: int) -> None:
        log.warning("intake of %s: %s sent #%d after #%d; it restarted without its outbox (or another daemon "
                    "uses the same box_id), so its sequence numbers started again", self.source.endpoint,
                    publisher_id, sequence, previous)
        with self._lock:
            self._counters.restarts += 1
        self._pending = [pending for pending in self._pending if pending.publisher_id != publisher_id]
        try:
            self._store.start_new_run(publisher_id)
        except StoreError as error:
            self._store_failed(error)

    def _gap(self, publisher_id: str, first: int, last: int) -> None:
        with self._lock:
            self._counters.gaps_seen += 1
        if not self.source.replay_endpoint:
            if not self._gap_without_replay_logged:
                self._gap_without_replay_logged = True
                log.warning("intake of %s: %s sequences %d..%d missing; the feed has no replay_endpoint, so hits "
                            "in gaps stay missing (further gaps are only counted)", self.source.endpoint,
                            publisher_id, first, last)
            return
        missing = _PendingRange(publisher_id, first, last)
        if self._pending and time.monotonic() < self._retry_at:
            # A replay failed a moment ago. Waiting for the back-off keeps a replay endpoint that is down from
            # stalling the live feed for REPLAY_TIMEOUT_S at every gap.
            log.info("intake of %s: %s sequences %d..%d missing; replay in %.1f s, after an earlier failure",
                     self.source.endpoint, publisher_id, first, last, self._retry_at - time.monotonic())
            self._keep_pending([*self._pending, missing])
            return
        log.info("intake of %s: %s sequences %d..%d missing; requesting replay", self.source.endpoint,
                 publisher_id, first, last)
        # Earlier failed ranges go first, so that hits are stored roughly in sequence order.
        ranges, self._pending = [*self._pending, missing], []
        self._replay_ranges(ranges)

    def _retry_pending(self) -> None:
        ranges, self._pending = self._pending, []
        log.info("intake of %s: retrying replay of %d range(s)", self.source.endpoint, len(ranges))
        self._replay_ranges(ranges)

    def _replay_ranges(self, ranges: list[_PendingRange]) -> None:
        for index, pending in enumerate(ranges):
            if self._stop.is_set():
                return
            try:
                self._replay(pending)
            except _ReplayFailed as failure:
                with self._lock:
                    self._counters.replay_failures += 1
                    self._counters.last_error = str(failure.error)
                # Hits that failed to store during this replay were queued in self._pending meanwhile.
                self._keep_pending([*self._pending, failure.remaining, *ranges[index + 1:]])
                log.warning("intake of %s: replay of %s %d..%d failed, retrying in %g s or at the next gap: %s",
                            self.source.endpoint, pending.publisher_id, failure.remaining.first, pending.last,
                            self._retry_delay_s, failure.error)
                self._retry_at = time.monotonic() + self._retry_delay_s
                self._retry_delay_s = min(self._retry_delay_s * 2, REPLAY_RETRY_MAX_S)
                return
        self._retry_delay_s = REPLAY_RETRY_FIRST_S

    def _keep_pending(self, ranges: list[_PendingRange]) -> None:
        self._pending = ranges
        if len(self._pending) > MAX_PENDING_RANGES:
            # The store drops duplicates, so one wider range per publisher is safe, only slower.
            merged: dict[str, _PendingRange] = {}
            for pending in self._pending:
                known = merged.get(pending.publisher_id)
                merged[pending.publisher_id] = pending if known is None else _PendingRange(
                    pending.publisher_id, min(known.first, pending.first), max(known.last, pending.last))
            self._pending = list(merged.values())

    def _replay(self, pending: _PendingRange) -> None:
        """Store the replayed hits of one range, in requests of at most MAX_RANGE sequences.

        Raises _ReplayFailed with the part of the range not yet covered when a request fails.
        """
        endpoint = self.source.replay_endpoint
        replayed = stored = 0
        first = pending.first
        while first <= pending.last and not self._stop.is_set():
            last = min(first + MAX_RANGE - 1, pending.last)
            end = None
            try:
                for item in request_replay(endpoint, first, last, REPLAY_TIMEOUT_S, self._context):
                    if isinstance(item, ReplayEnd):
                        end = item
                    elif self._is_from(item, pending.publisher_id):
                        replayed += 1
                        stored += self._store_hit(item, replayed=True)
                    if self._stop.is_set():
                        break
            except ReplayError as error:
                raise _ReplayFailed(_PendingRange(pending.publisher_id, first, pending.last), error) from error
            if end is None:
                break
            expired = end.expired_before(first)
            if expired is not None:
                log.warning("intake of %s: %s sequences %d..%d are no longer in the outbox of %s", self.source.endpoint,
                            pending.publisher_id, first, min(expired, pending.last), endpoint)
            if end.newest_available is None or end.newest_available <= last:
                break
            # Skip requests for ranges that the outbox no longer holds.
            first = max(last + 1, end.oldest_available or 0)
        log.info("intake of %s: replay of %s %d..%d from %s: %d message(s), %d new hit(s) stored",
                 self.source.endpoint, pending.publisher_id, pending.first, pending.last, endpoint, replayed, stored)

    def _is_from(self, message: FeedMessage, publisher_id: str) -> bool:
        if message.header.get("publisher_id") == publisher_id:
            return True
        if not self._foreign_replay_logged:
            self._foreign_replay_logged = True
            log.warning("intake of %s: the replay endpoint %s sends messages of %r, not of %r; give each daemon "
                        "its own feed entry with its own replay_endpoint", self.source.endpoint,
                        self.source.replay_endpoint, message.header.get("publisher_id"), publisher_id)
        return False

    # Store

    def _store_hit(self, message: FeedMessage, replayed: bool) -> bool:
        """Store a hit; return whether it was new. A StoreError is logged and counted instead of raised."""
        try:
            hit = self._store.add(message)
        except InvalidHitError as error:
            self._reject(str(error))
            return False
        except StoreError as error:
            self._store_failed(error)
            self._retry_later(message)
            return False
        if hit is None:
            return False
        with self._lock:
            self._counters.hits_stored += 1
            self._counters.replayed += int(replayed)
        if self._on_stored is not None:
            try:
                self._on_stored(hit)
            except Exception:
                # The callback belongs to the caller; its failure must not stop the intake of later hits.
                log.exception("intake of %s: on_stored failed for hit %d", self.source.endpoint, hit.id)
        return True

    def _retry_later(self, message: FeedMessage) -> None:
        """Queue a hit that could not be stored for another replay, when the source has a replay endpoint."""
        publisher_id = message.header.get("publisher_id")
        sequence = message.header.get("sequence")
        if not self.source.replay_endpoint or not isinstance(publisher_id, str) or not isinstance(sequence, int):
            return
        if not self._pending:
            self._retry_at = time.monotonic() + self._retry_delay_s
        self._keep_pending([*self._pending, _PendingRange(publisher_id, sequence, sequence)])

    def _update_health(self, message: FeedMessage) -> None:
        try:
            self._store.update_health(message.header)
        except InvalidHitError as error:
            self._reject(str(error))
        except StoreError as error:
            self._store_failed(error)

    def _reject(self, reason: str) -> None:
        with self._lock:
            self._counters.invalid_messages += 1
            count = self._counters.invalid_messages
            self._counters.last_error = reason
        if count % REPEAT_LOG_EVERY == 1:
            log.warning("intake of %s: invalid message %d: %s", self.source.endpoint, count, reason)

    def _store_failed(self, error: StoreError) -> None:
        with self._lock:
            self._counters.store_errors += 1
            count = self._counters.store_errors
            self._counters.last_error = str(error)
        if count % REPEAT_LOG_EVERY == 1:
            log.error("intake of %s: store error %d: %s", self.source.endpoint, count, error)


def _read_identity(frames: list[bytes]) -> tuple[str, str, int] | None:
    """Return the topic, publisher_id and sequence of a message, or None when they cannot be read."""
    if len(frames) < 2:
        return None
    try:
        topic = frames[0].decode("utf-8")
    except UnicodeDecodeError:
        return None
    match = _HEADER_PREFIX.match(frames[1])
    if match is not None:
        try:
            publisher_id = json.loads(match.group(1).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return topic, publisher_id, int(match.group(2))
    message = _decode(frames)
    if message is None:
        return None
    publisher_id = message.header.get("publisher_id")
    sequence = message.header.get("sequence")
    if not isinstance(publisher_id, str) or isinstance(sequence, bool) or not isinstance(sequence, int):
        return None
    return topic, publisher_id, sequence


def _decode(frames: list[bytes]) -> FeedMessage | None:
    try:
        header = json.loads(frames[1].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    return FeedMessage(topic=frames[0].decode("utf-8"), header=header, images=frames[2:])
