"""Outbox: an SQLite copy of every hit and plate message, written before the message is sent, for replay.

One daemon owns one outbox file. The publisher thread writes it through an `Outbox`, and the replay server
reads it through its own `OutboxReader` connection. WAL mode lets those reads run while the publisher writes.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

OUTBOX_NAME = "outbox.sqlite"
BUSY_TIMEOUT_S = 5.0
# Retention runs at open and then once per this many stored messages, because it scans the whole table.
RETENTION_INTERVAL_WRITES = 100
# It also runs when this long has passed, or a tenth of max_age_s if that is shorter, so that a box that
# stores few messages still deletes them on time.
RETENTION_INTERVAL_MAX_S = 600.0
# A restart resumes after the highest reserved sequence, so it skips at most this many numbers.
SEQUENCE_BLOCK = 1000
# Images are stored as a 4-byte big-endian length before each image's bytes.
_IMAGE_LENGTH = struct.Struct(">I")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    sequence INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    header BLOB NOT NULL,
    images BLOB NOT NULL,
    size_bytes INTEGER NOT NULL,
    written_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_written_at ON messages (written_at);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_RESERVED_KEY = "sequence_reserved_through"
# The highest sequence that retention deleted, so a replay can tell expired hits from sequences of
# topics that were never stored (det and health).
_EXPIRED_KEY = "expired_through"


def is_stored_topic(topic: str) -> bool:
    """Return True for the topics investigators search later: every `hit.` topic and `plate`."""
    return topic.startswith("hit.") or topic == "plate"


def default_outbox_path() -> Path:
    """Return $EDGE_DATA_DIR/outbox.sqlite, or ./data/outbox.sqlite when EDGE_DATA_DIR is unset."""
    return Path(os.environ.get("EDGE_DATA_DIR") or "data") / OUTBOX_NAME


def encode_images(images: Sequence[bytes]) -> bytes:
    return b"".join(_IMAGE_LENGTH.pack(len(image)) + image for image in images)


def decode_images(data: bytes) -> list[bytes]:
    images = []
    offset = 0
    while offset < len(data):
        (length,) = _IMAGE_LENGTH.unpack_from(data, offset)
        offset += _IMAGE_LENGTH.size
        images.append(data[offset:offset + length])
        offset += length
    return images


@dataclass(frozen=True)
class StoredMessage:
    sequence: int
    topic: str
    header: bytes  # the exact JSON bytes that were sent
    images: list[bytes]
    written_at: float  # epoch seconds


class OutboxReader:
    """A read connection to the outbox at `path`; the replay server uses one of its own."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        # isolation_level=None: every statement commits on its own, so a write is durable before the send.
        self._connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)

    def last_sequence(self) -> int:
        """Return the highest stored sequence, or 0 when nothing is stored."""
        row = self._connection.execute("SELECT MAX(sequence) FROM messages").fetchone()
        return row[0] or 0

    def oldest_sequence(self) -> int | None:
        return self._connection.execute("SELECT MIN(sequence) FROM messages").fetchone()[0]

    def expired_through(self) -> int:
        """Return the highest sequence that retention deleted, or 0 when it deleted nothing."""
        row = self._connection.execute("SELECT value FROM state WHERE key = ?", (_EXPIRED_KEY,)).fetchone()
        return row[0] if row else 0

    def read_range(self, first: int, last: int, limit: int) -> list[StoredMessage]:
        """Return up to `limit` stored messages with `first <= sequence <= last`, lowest sequence first."""
        rows = self._connection.execute(
            "SELECT sequence, topic, header, images, written_at FROM messages "
            "WHERE sequence BETWEEN ? AND ? ORDER BY sequence LIMIT ?",
            (first, last, limit),
        ).fetchall()
        return [StoredMessage(sequence, topic, bytes(header), decode_images(images), written_at)
                for sequence, topic, header, images, written_at in rows]

    def close(self) -> None:
        self._connection.close()


class Outbox(OutboxReader):
    """The outbox at `path`, created with its parent folders when missing, that keeps messages for
    `max_age_s` seconds and at most about `max_bytes` of headers and images.

    Raises sqlite3.Error or OSError when the file cannot be created or opened. `clock` returns epoch seconds.
    """

    def __init__(self, path: Path | str, max_age_s: float, max_bytes: int, clock: Callable[[], float] = time.time):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path)
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._writes_since_retention = 0
        self._retention_interval_s = min(RETENTION_INTERVAL_MAX_S, max_age_s / 10)
        self._last_retention_s = clock()
        connection = self._connection
        if connection.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            log.warning("outbox %s: WAL mode is not available on this file system; replay reads may "
                        "wait for writes", self.path)
        # FULL syncs each commit, so a stored message survives a power cut as well as a crash.
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(_SCHEMA)
        # Kept up to date by write and apply_retention, so the metrics endpoint reads it without a query.
        self.stored_messages: int = connection.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        self.apply_retention()

    def reserved_sequence(self) -> int:
        """Return the highest sequence reserved by `reserve_through`, or 0."""
        row = self._connection.execute("SELECT value FROM state WHERE key = ?", (_RESERVED_KEY,)).fetchone()
        return row[0] if row else 0

    def next_sequence(self) -> int:
        """Return the first sequence that no earlier run of the publisher can have used."""
        return max(self.last_sequence(), self.reserved_sequence()) + 1

    def reserve_through(self, sequence: int) -> None:
        """Record that sequences up to `sequence` may be in use, so that a restart starts after it."""
        self._set_state(_RESERVED_KEY, sequence)

    def _set_state(self, key: str, value: int) -> None:
        self._connection.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def write(self, sequence: int, topic: str, header: bytes, images: Sequence[bytes]) -> None:
        """Store one message; raise sqlite3.Error when it could not be stored, for example on a full disk."""
        encoded = encode_images(images)
        self._connection.execute(
            "INSERT INTO messages (sequence, topic, header, images, size_bytes, written_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sequence, topic, header, encoded, len(header) + len(encoded), self._clock()),
        )
        self.stored_messages += 1
        self._writes_since_retention += 1
        if self._writes_since_retention >= RETENTION_INTERVAL_WRITES:
            self.apply_retention()

    def apply_retention_if_due(self) -> int:
        """Apply retention when its interval has passed since the last run; return the number deleted."""
        if self._clock() - self._last_retention_s < self._retention_interval_s:
            return 0
        return self.apply_retention()

    def apply_retention(self) -> int:
        """Delete messages older than max_age_s, then the oldest beyond max_bytes; return the number deleted."""
        self._writes_since_retention = 0
        self._last_retention_s = self._clock()
        connection = self._connection
        cutoff = self._clock() - self.max_age_s
        (expired_through,) = connection.execute("SELECT MAX(sequence) FROM messages WHERE written_at < ?",
                                                (cutoff,)).fetchone()
        deleted = connection.execute("DELETE FROM messages WHERE written_at < ?", (cutoff,)).rowcount
        # The newest messages whose sizes add up to at most max_bytes stay, and every older one is deleted.
        row = connection.execute(
            "SELECT MAX(sequence) FROM (SELECT sequence, SUM(size_bytes) OVER (ORDER BY sequence DESC) AS newer "
            "FROM messages) WHERE newer > ?",
            (self.max_bytes,),
        ).fetchone()
        if row[0] is not None:
            deleted += connection.execute("DELETE FROM messages WHERE sequence <= ?", (row[0],)).rowcount
            expired_through = max(expired_through or 0, row[0])
        if expired_through is not None and expired_through > self.expired_through():
            self._set_state(_EXPIRED_KEY, expired_through)
        self.stored_messages -= deleted
        if deleted:
            log.info("outbox %s: deleted %d message(s) older than %g s or beyond %d bytes", self.path, deleted,
                     self.max_age_s, self.max_bytes)
        return deleted
