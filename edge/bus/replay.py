"""Replay: a ZeroMQ ROUTER socket that resends stored messages from the outbox, and the client for it.

Request, one frame from a DEALER socket: JSON `{"from": N, "to": M}`, where `to` is optional.
Reply, one multipart message per stored message with `from <= sequence <= to`: `[topic, header, images...]`,
exactly as first sent, then `[b"replay.end", JSON {"from", "to", "count", "oldest_available",
"newest_available", "expired_through"}]`. A bad request gets `[b"replay.error", JSON {"error": ...}]`. The ROUTER socket
adds the peer identity in front of each reply, and the DEALER socket removes it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zmq

from edge.bus.heartbeat import Heartbeat
from edge.bus.outbox import OutboxReader
from edge.bus.schema import decode_header
from edge.bus.subscriber import FeedMessage, open_subscriber, receive_message

log = logging.getLogger(__name__)

TOPIC_END = b"replay.end"
TOPIC_ERROR = b"replay.error"
# Maximum sequences one request covers; a client that needs more sends another request from `to` + 1.
MAX_RANGE = 10_000
# The largest integer that SQLite stores, so the largest sequence number the outbox can hold.
MAX_SEQUENCE = 2**63 - 1
# Messages read from SQLite at a time, so that a long reply never keeps all its images in memory.
READ_CHUNK = 100
# Maximum wait for a client to take the next reply message before the server stops that reply.
SEND_TIMEOUT_MS = 10_000
POLL_INTERVAL_MS = 200
# Maximum wait for each reply message of a replay request.
REPLAY_TIMEOUT_S = 10.0


class ReplayError(Exception):
    """The replay socket could not be opened, or a replay request failed."""


class InvalidRequest(ValueError):
    pass


@dataclass(frozen=True)
class ReplayRange:
    first: int
    last: int


def parse_request(payload: bytes) -> ReplayRange:
    """Parse a request; raise InvalidRequest with a message for the client."""
    try:
        request = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequest(f"request is not UTF-8 JSON ({error}); send {{\"from\": N, \"to\": M}}") from None
    if not isinstance(request, dict):
        raise InvalidRequest(f"request {request!r} is not a JSON object; send {{\"from\": N, \"to\": M}}")
    unknown = sorted(set(request) - {"from", "to"})
    if unknown:
        raise InvalidRequest(f"unknown request field(s) {', '.join(unknown)}; allowed: from, to")
    if "from" not in request:
        raise InvalidRequest("request has no 'from'; send {\"from\": N} with the first sequence wanted")
    first = _sequence_field(request, "from")
    cap = min(first + MAX_RANGE, MAX_SEQUENCE)
    last = _sequence_field(request, "to") if request.get("to") is not None else cap
    if last < first:
        raise InvalidRequest(f"'to' ({last}) is lower than 'from' ({first})")
    return ReplayRange(first, min(last, cap))


def _sequence_field(request: dict, name: str) -> int:
    value = request[name]
    # bool is a subclass of int in Python, but true or false is never a sequence number.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQUENCE:
        # The value is quoted as JSON, as the client sent it: true, not True.
        raise InvalidRequest(f"invalid '{name}' {json.dumps(value)}: expected a sequence number from 0 to "
                             f"{MAX_SEQUENCE}")
    return value


class ReplayServer:
    """Serves replay requests on `endpoint` from the outbox at `outbox_path`, one request at a time."""

    def __init__(self, endpoint: str, outbox_path: Path | str, context: zmq.Context | None = None,
                 heartbeat: Heartbeat | None = None):
        self.endpoint = endpoint
        self.outbox_path = Path(outbox_path)
        self.heartbeat = heartbeat or Heartbeat()
        self._context = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._bind_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="replay", daemon=True)

    def start(self) -> None:
        """Start the thread; raise ReplayError when the socket cannot be bound."""
        self._thread.start()
        self._bound.wait()
        if self._bind_error is not None:
            raise ReplayError(self._bind_error)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=SEND_TIMEOUT_MS / 1000 + 5)

    def _run(self) -> None:
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        # MANDATORY makes a send to a full or vanished client fail instead of dropping messages without a word,
        # and SNDTIMEO bounds how long a stalled client can hold up the other clients.
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        self.heartbeat.apply(socket)
        try:
            socket.bind(self.endpoint)
        except zmq.ZMQError as error:
            self._fail_start(socket, f"cannot bind the replay socket to {self.endpoint}: {error}; choose a free "
                             "address in publisher.replay_endpoint, stop the process using it, or set it to \"\" "
                             "to turn replay off")
            return
        try:
            reader = OutboxReader(self.outbox_path)
        except sqlite3.Error as error:
            self._fail_start(socket, f"cannot open the outbox {self.outbox_path} for replay: {error}; "
                             "check publisher.outbox_path")
            return
        log.info("serving replay of %s on %s", self.outbox_path, self.endpoint)
        self._bound.set()
        try:
            while not self._stop.is_set():
                if socket.poll(POLL_INTERVAL_MS, zmq.POLLIN):
                    self._serve_safely(socket, reader, socket.recv_multipart())
        finally:
            reader.close()
            socket.close()

    def _fail_start(self, socket: zmq.Socket, message: str) -> None:
        self._bind_error = message
        socket.close()
        self._bound.set()

    def _serve_safely(self, socket: zmq.Socket, reader: OutboxReader, frames: list[bytes]) -> None:
        """Serve one request; an unexpected error fails that request only, never the replay thread."""
        try:
            self._serve(socket, reader, frames)
        except Exception as error:  # noqa: BLE001 - anyone who reaches the endpoint can send any request.
            log.exception("replay request from client %s failed", frames[0].hex())
            reply = json.dumps({"error": f"the replay server failed on this request ({type(error).__name__}); "
                                         "retry, and report it if it repeats"}).encode("utf-8")
            try:
                socket.send_multipart([frames[0], TOPIC_ERROR, reply])
            except zmq.ZMQError:
                pass  # the client disconnected, so the error cannot reach it

    def _serve(self, socket: zmq.Socket, reader: OutboxReader, frames: list[bytes]) -> None:
        identity = frames[0]
        try:
            socket.send_multipart([identity, *self._reply(socket, reader, frames)])
        except zmq.ZMQError as error:
            # EAGAIN: the client stopped reading for SEND_TIMEOUT_MS. EHOSTUNREACH: it disconnected.
            log.warning("replay to client %s stopped: %s; the client stopped reading or disconnected",
                        identity.hex(), error)

    def _reply(self, socket: zmq.Socket, reader: OutboxReader, frames: list[bytes]) -> list[bytes]:
        """Send the stored messages in the requested range; return the end marker or error reply to send last."""
        try:
            # A DEALER sends [payload]; a REQ socket adds an empty delimiter frame before it.
            if len(frames) not in (2, 3) or (len(frames) == 3 and frames[1] != b""):
                raise InvalidRequest(f"request has {len(frames) - 1} frames; send one frame of JSON")
            requested = parse_request(frames[-1])
        except InvalidRequest as error:
            log.warning("replay request rejected: %s", error)
            return [TOPIC_ERROR, json.dumps({"error": str(error)}).encode("utf-8")]
        try:
            # Read the bounds first: messages are stored in sequence order, so every stored message up to
            # newest_available is already in the file and in the reply when the range covers it.
            oldest, newest = reader.oldest_sequence(), reader.last_sequence() or None
            expired_through = reader.expired_through()
            count = self._send_range(socket, reader, frames[0], requested)
            end = {"from": requested.first, "to": requested.last, "count": count, "oldest_available": oldest,
                   "newest_available": newest, "expired_through": expired_through}
        except sqlite3.Error as error:
            log.error("replay of %d..%d failed reading the outbox %s: %s", requested.first, requested.last,
                      self.outbox_path, error)
            return [TOPIC_ERROR, json.dumps({"error": f"reading the outbox failed: {error}; retry later"}).encode()]
        return [TOPIC_END, json.dumps(end).encode("utf-8")]

    def _send_range(self, socket: zmq.Socket, reader: OutboxReader, identity: bytes, requested: ReplayRange) -> int:
        count = 0
        first = requested.first
        while first <= requested.last:
            chunk = reader.read_range(first, requested.last, READ_CHUNK)
            for message in chunk:
                socket.send_multipart([identity, message.topic.encode("utf-8"), message.header, *message.images])
                count += 1
            if len(chunk) < READ_CHUNK:
                break
            first = chunk[-1].sequence + 1
        return count


@dataclass
class ReplayEnd:
    first: int
    last: int
    count: int
    oldest_available: int | None
    newest_available: int | None
    # The highest sequence that the outbox's retention deleted; 0 when nothing expired. None from daemons
    # that do not send it, where any missing sequence may have expired.
    expired_through: int | None = None

    def expired_before(self, first: int) -> int | None:
        """Return the last sequence from `first` on that expired before the oldest stored one, or None."""
        if self.oldest_available is None or self.oldest_available <= first:
            return None
        last_missing = self.oldest_available - 1
        if self.expired_through is not None:
            last_missing = min(last_missing, self.expired_through)
        return last_missing if last_missing >= first else None


def request_replay(endpoint: str, first: int, last: int | None, timeout_s: float,
                   context: zmq.Context | None = None) -> Iterator[FeedMessage | ReplayEnd]:
    """Yield the replayed messages of one request, then its ReplayEnd.

    Raises ReplayError when the server rejects the request or sends nothing for `timeout_s` seconds.
    """
    context = context or zmq.Context.instance()
    # A new socket per request, so a late reply to an earlier request that timed out is never mistaken for this one.
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(endpoint)
        request = {"from": first} if last is None else {"from": first, "to": last}
        socket.send(json.dumps(request).encode("utf-8"))
        while True:
            if not socket.poll(int(timeout_s * 1000), zmq.POLLIN):
                raise ReplayError(f"no reply from the replay endpoint {endpoint} within {timeout_s:g} s; check that "
                                  "the daemon runs and that its publisher.replay_endpoint is this address")
            topic, *rest = socket.recv_multipart()
            if topic == TOPIC_END:
                end = json.loads(rest[0].decode("utf-8"))
                yield ReplayEnd(end["from"], end["to"], end["count"], end["oldest_available"],
                                end.get("newest_available"), end.get("expired_through"))
                return
            if topic == TOPIC_ERROR:
                raise ReplayError(f"replay endpoint {endpoint} rejected {request}: "
                                  f"{json.loads(rest[0].decode('utf-8'))['error']}")
            yield FeedMessage(topic=topic.decode("utf-8"), header=decode_header(rest[0]), images=rest[1:])
    finally:
        socket.close()


def replay_span(endpoint: str, first: int, last: int | None, context: zmq.Context | None = None
                ) -> Iterator[FeedMessage | ReplayEnd]:
    """Yield the stored messages from `first` through `last` over as many requests as needed, then the last ReplayEnd.

    With `last` None, it requests until it has passed the newest stored message.
    """
    while True:
        for item in request_replay(endpoint, first, last, REPLAY_TIMEOUT_S, context):
            if not isinstance(item, ReplayEnd):
                yield item
                continue
            target = last if last is not None else item.newest_available
            if target is None or item.last >= target:
                yield item
                return
            first = item.last + 1


def subscribe_from(endpoint: str, replay_endpoint: str, topics: list[str], first: int,
                   timeout_s: float | None = None, context: zmq.Context | None = None) -> Iterator[FeedMessage]:
    """Yield every message from sequence `first` on whose topic starts with one of `topics` (all when empty):
    stored ones from the replay endpoint, then live ones from the feed, each sequence once.

    A stored message that the live feed missed, during the hand-over or later, is fetched again when the next
    live message shows the gap, so it can come after live messages of other topics. Live messages of topics
    that are not stored, such as `det`, that arrive while a replay runs are yielded after it.
    Stops once `timeout_s` passes with no live message. Raises ReplayError when the first replay fails.
    """
    context = context or zmq.Context.instance()
    # Health is received even when not requested, because its periodic messages show gaps on a quiet feed.
    # Receiving without limit keeps the live messages that arrive while a long replay is sent.
    live_topics = [*topics, "health"] if topics else []
    socket = open_subscriber(context, endpoint, live_topics, receive_hwm=0)
    try:
        # The SUB socket is connected before the replay starts, so the replay and the live feed overlap.
        replayed: set[int] = set()
        covered = first - 1  # every stored message up to this sequence has been yielded
        for item in replay_span(replay_endpoint, first, None, context):
            if isinstance(item, ReplayEnd):
                _warn_if_expired(first, item)
                covered = max(covered, item.newest_available or 0)
            elif _matches_topics(item, topics):
                replayed.add(item.header["sequence"])
                yield item
        while socket.poll(None if timeout_s is None else int(timeout_s * 1000), zmq.POLLIN):
            message = receive_message(socket)
            sequence = message.header["sequence"]
            if sequence < first:
                continue
            if sequence > covered + 1:
                for item in _fill_gap(replay_endpoint, covered + 1, sequence - 1, context):
                    if _matches_topics(item, topics) and item.header["sequence"] not in replayed:
                        replayed.add(item.header["sequence"])
                        yield item
            covered = max(covered, sequence)
            duplicate = sequence in replayed
            # Live messages arrive in sequence order, so replayed sequences up to this one cannot come again.
            replayed = {s for s in replayed if s > sequence}
            if not duplicate and _matches_topics(message, topics):
                yield message
    finally:
        socket.close()


def _matches_topics(message: FeedMessage, topics: list[str]) -> bool:
    return not topics or any(message.topic.startswith(topic) for topic in topics)


def _warn_if_expired(first: int, end: ReplayEnd) -> None:
    expired = end.expired_before(first)
    if expired is not None:
        log.warning("messages %d..%d are no longer in the outbox; the replay starts at %d", first, expired,
                    end.oldest_available)


def _fill_gap(endpoint: str, first: int, last: int, context: zmq.Context) -> Iterator[FeedMessage]:
    """Yield the stored messages in a gap of the live feed; a failed replay is logged, and the gap stays."""
    try:
        for item in replay_span(endpoint, first, last, context):
            if not isinstance(item, ReplayEnd):
                yield item
    except ReplayError as error:
        log.warning("cannot fetch messages %d..%d missing from the live feed: %s", first, last, error)
