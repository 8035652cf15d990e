"""Hit store of the web service: plate reads and watchlist hits in SQLite, their snapshots as JPEG files.

Layout under `data_dir`:

    hits.sqlite3                      the database, in WAL mode
    media/YYYY-MM-DD/NAME.jpg         snapshots and crops, in folders named by the UTC day they were received

Each thread gets its own SQLite connection, so searches from aiohttp's executor threads run while the
intake thread writes. Writes from all threads go through one lock, which also covers the JPEG files of a
hit, so writes of this process do not wait on SQLite's busy timeout. Each connection also has a lock of its own, which
its thread holds while it uses the connection, so that close() never closes a connection in use. One
process owns a data folder; two web services must not share one.

Crash safety comes from the order of the steps. `add` writes and syncs the JPEG files before it inserts
the row, and retention deletes rows before their files. A crash therefore leaves at worst files without
a row, which the next retention run deletes, and never a row whose files are missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from edge.bus.outbox import is_stored_topic
from edge.bus.schema import SCHEMA_VERSION, utc_iso
from edge.bus.subscriber import FeedMessage
from edge.plates.grammar import normalise_plate_text
from edge.watchlist.plates import ANY_ONE, ANY_RUN

log = logging.getLogger(__name__)

DATABASE_NAME = "hits.sqlite3"
MEDIA_DIR = "media"
# Version of the tables below, kept in PRAGMA user_version; a newer file is rejected instead of misread.
STORE_VERSION = 2
BUSY_TIMEOUT_S = 10.0

MAX_ACK_NOTE_CHARS = 2000
MAX_ACK_USER_CHARS = 200
# Texts from a box's messages, such as camera names, watchlist reasons and errors, are cut to this length.
# Site configs and watchlists allow 200 characters, so only a faulty or foreign publisher sends more.
MAX_FEED_TEXT_CHARS = 200
MAX_PAGE_SIZE = 500
PLATE_MODES = ("exact", "prefix", "wildcard")
# Topic filters of HitQuery: None for every topic, "hits" for every `hit.` topic.
TOPIC_FILTERS = ("plate", "hit.plate", "hit.face", "hits")

SECONDS_PER_DAY = 86_400.0
# Rows deleted per transaction by retention, so that the write lock is released between batches.
RETENTION_BATCH_ROWS = 500
# Estimate of the bytes that a row and its index entries take besides the header text, used to pick how
# many of the oldest rows the size cap deletes.
ROW_OVERHEAD_BYTES = 400
# A file without a row is deleted only when it is older than this, because `add` writes files before their
# row. The age is taken from the file's mtime and the real clock, never from the store's clock.
ORPHAN_GRACE_S = 600.0
# Retention looks for files without a row at its first run and then at most this often, because it walks
# the whole media folder. Only a crash or a failed delete leaves such files.
ORPHAN_SWEEP_INTERVAL_S = 3600.0

_DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]+")
_JPEG_MAGIC = b"\xff\xd8"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS publishers (
    publisher_id TEXT PRIMARY KEY,
    run INTEGER NOT NULL,
    last_sequence INTEGER
);
CREATE TABLE IF NOT EXISTS hits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    publisher_id TEXT NOT NULL,
    run INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    topic TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    frame_time TEXT NOT NULL,
    received_at TEXT NOT NULL,
    received_at_s REAL NOT NULL,
    track_id INTEGER,
    plate_text TEXT,
    plate_type TEXT,
    plate_colour TEXT,
    confidence REAL,
    person_name TEXT,
    similarity REAL,
    list_name TEXT,
    entry_pattern TEXT,
    reason TEXT,
    box_xyxy TEXT,
    snapshot_path TEXT,
    crop_path TEXT,
    media_bytes INTEGER NOT NULL,
    header TEXT NOT NULL,
    acked_by TEXT,
    acked_at TEXT,
    ack_note TEXT,
    UNIQUE (publisher_id, run, sequence)
);
CREATE INDEX IF NOT EXISTS hits_frame_time ON hits (frame_time);
CREATE INDEX IF NOT EXISTS hits_camera_time ON hits (camera_id, frame_time);
CREATE INDEX IF NOT EXISTS hits_plate ON hits (plate_text);
CREATE INDEX IF NOT EXISTS hits_topic_time ON hits (topic, frame_time);
CREATE INDEX IF NOT EXISTS hits_list_time ON hits (list_name, frame_time);
CREATE INDEX IF NOT EXISTS hits_received ON hits (received_at_s);
CREATE TABLE IF NOT EXISTS cameras (
    publisher_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    state TEXT,
    frames_decoded INTEGER,
    fps REAL,
    frames_dropped INTEGER,
    reconnects INTEGER,
    last_error TEXT,
    last_frame_age_s REAL,
    uptime_s REAL,
    sent_at TEXT,
    updated_at TEXT NOT NULL,
    updated_at_s REAL NOT NULL,
    camera_name TEXT,
    PRIMARY KEY (publisher_id, camera_id)
);
"""

_HIT_COLUMNS = (
    "id, publisher_id, sequence, topic, camera_id, frame_time, received_at, track_id, plate_text, plate_type, "
    "plate_colour, confidence, person_name, similarity, list_name, entry_pattern, reason, box_xyxy, "
    "snapshot_path, crop_path, header, acked_by, acked_at, ack_note"
)


class StoreError(Exception):
    """The hit store failed: a database or file error, or an invalid argument (see the subclasses)."""


class StoreClosedError(StoreError):
    """The store was used after close()."""


class InvalidHitError(StoreError, ValueError):
    """A feed message lacks a field that the store needs, or has an unsupported schema version."""


class InvalidQueryError(StoreError, ValueError):
    """A search filter or page number is invalid."""


class HitNotFoundError(StoreError, LookupError):
    """No hit has the given id, for example because retention deleted it."""


class InvalidAckError(StoreError, ValueError):
    """The user or note of an acknowledgement is empty or too long."""


class AlreadyAcknowledgedError(StoreError):
    """The hit was acknowledged before; the first acknowledgement stays on record."""

    def __init__(self, hit: StoredHit):
        super().__init__(f"hit {hit.id} was already acknowledged by {hit.acked_by} at {hit.acked_at}")
        self.hit = hit


class MediaPathError(StoreError, ValueError):
    """A media path is absolute, or points outside the media folder."""


@dataclass(frozen=True)
class StoredHit:
    """One stored `plate`, `hit.plate`, `hit.face` or later `hit.` message.

    Times are UTC ISO 8601 text with milliseconds and a `Z` suffix. `snapshot_path` and `crop_path` are
    relative to the data folder, such as `media/2026-12-04/hub-07-1a2b3c4d-r1-37-snapshot.jpg`, or None
    when the message had no such image. Pass them to `HitStore.media_path`.
    """

    id: int
    publisher_id: str
    sequence: int
    topic: str
    camera_id: str
    frame_time: str
    received_at: str
    track_id: int | None
    plate_text: str | None
    plate_type: str | None
    plate_colour: str | None
    confidence: float | None
    person_name: str | None
    similarity: float | None
    list_name: str | None
    entry_pattern: str | None
    reason: str | None
    box_xyxy: list[float] | None  # vehicle box of a plate, face box of a face
    snapshot_path: str | None
    crop_path: str | None
    header: dict
    acked_by: str | None
    acked_at: str | None
    ack_note: str | None


@dataclass(frozen=True)
class HitQuery:
    """Search filters; None leaves a filter out.

    `plate` is normalised like a watchlist pattern: spaces, `·` and `-` are removed, full-width letters
    and digits become ASCII, and Latin letters become upper case. `plate_mode` is `exact`, `prefix`, or
    `wildcard`, where `*` matches any run of characters and `?` exactly one. `since` and `until` are
    timezone-aware and filter on `frame_time`: since <= frame_time < until. `topic` is `plate`,
    `hit.plate`, `hit.face`, or `hits` for every `hit.` topic. `camera_id` matches a camera id in any
    case, or the name of cameras whose daemon reported that name, also in any case.
    """

    plate: str | None = None
    plate_mode: str = "exact"
    camera_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    topic: str | None = None
    list_name: str | None = None

    def __post_init__(self) -> None:
        if self.plate_mode not in PLATE_MODES:
            raise InvalidQueryError(f"invalid plate_mode {self.plate_mode!r}; allowed: {', '.join(PLATE_MODES)}")
        if self.topic is not None and self.topic not in TOPIC_FILTERS:
            raise InvalidQueryError(f"invalid topic {self.topic!r}; allowed: {', '.join(TOPIC_FILTERS)} or None")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
                raise InvalidQueryError(f"invalid {name} {value!r}: expected a timezone-aware datetime")


@dataclass(frozen=True)
class SearchPage:
    hits: list[StoredHit]  # newest frame_time first
    total: int  # hits that match the query on all pages
    page: int
    page_size: int
    pages: int  # at least 1, also when nothing matches


@dataclass(frozen=True)
class RetentionReport:
    deleted_rows: int  # hits deleted for age or size
    deleted_files: int  # snapshot and crop files of those hits, plus files that had no row
    freed_bytes: int  # sizes of the deleted files
    deleted_cameras: int  # camera health rows not updated within the retention age


@dataclass(frozen=True)
class CameraStatus:
    """Latest `health` counters of one camera, as sent by its daemon."""

    publisher_id: str
    camera_id: str
    state: str | None
    frames_decoded: int | None
    fps: float | None  # decoded frames per second between the last two health messages; None after a restart
    frames_dropped: int | None
    reconnects: int | None
    last_error: str | None
    last_frame_age_s: float | None
    updated_at: str  # when the store received the health message, UTC ISO 8601
    camera_name: str | None = None  # the name in the daemon's site config; None from daemons before it was sent


@dataclass(frozen=True)
class StorageUsage:
    database_bytes: int  # pages in use in the database file; the WAL file is not counted
    media_bytes: int  # lengths of the snapshot and crop files of the stored hits


@dataclass(frozen=True)
class _HitRow:
    """Column values of a hit, taken from the header before the row is written."""

    publisher_id: str
    sequence: int
    topic: str
    camera_id: str
    frame_time: str
    track_id: int | None
    plate_text: str | None
    plate_type: str | None
    plate_colour: str | None
    confidence: float | None
    person_name: str | None
    similarity: float | None
    list_name: str | None
    entry_pattern: str | None
    reason: str | None
    box_xyxy: list[float] | None


class HitStore:
    """Plate reads and watchlist hits of every feed, with their JPEG files, under `data_dir`.

    Thread-safe: a connection per thread, and one lock for writes. `clock` returns epoch seconds and sets
    received_at, updated_at and the retention age; tests pass a fake one.
    Every method raises StoreError on a database error and StoreClosedError after close(). The constructor
    raises StoreError when the database cannot be opened or was written by a newer version.
    """

    def __init__(self, data_dir: Path, clock: Callable[[], float] = time.time):
        self.data_dir = Path(data_dir)
        self.database_path = self.data_dir / DATABASE_NAME
        self.media_dir = self.data_dir / MEDIA_DIR
        self._clock = clock
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[_ThreadConnection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._next_orphan_sweep: float | None = None  # store clock; None: sweep at the first retention run
        try:
            self.media_dir.mkdir(parents=True, exist_ok=True)
            with self._use() as connection:
                self._create_schema(connection)
        except OSError as error:
            self.close()
            raise StoreError(f"cannot create {self.media_dir}: {error}; check that web data_dir is writable") from error
        except StoreError:
            self.close()
            raise
        log.info("hit store opened in %s", self.data_dir)

    # Connections and transactions

    @contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """Hold this thread's connection, opened on first use, for the block; raise StoreClosedError after close()."""
        entry = getattr(self._local, "entry", None)
        if entry is None:
            entry = self._open_connection()
            self._local.entry = entry
        # An RLock, because public methods call each other, for example acknowledge() calls get().
        with entry.lock:
            if self._closed:
                raise StoreClosedError(f"the hit store in {self.data_dir} is closed")
            try:
                yield entry.connection
            except sqlite3.Error as error:
                raise StoreError(f"hit store {self.database_path}: {error}") from error

    def _open_connection(self) -> _ThreadConnection:
        if self._closed:
            raise StoreClosedError(f"the hit store in {self.data_dir} is closed")
        # check_same_thread=False only so that close() can close every thread's connection. Otherwise each
        # connection is used only by the thread that opened it, under its lock.
        connection = sqlite3.connect(self.database_path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                     check_same_thread=False)
        # In WAL mode NORMAL is safe: a power cut can roll back the last commits but does not corrupt the
        # database (SQLite documentation of PRAGMA synchronous).
        # A lost hit row leaves its files, which retention deletes, and the replay fetches the hit again.
        connection.execute("PRAGMA synchronous=NORMAL")
        entry = _ThreadConnection(connection, threading.RLock())
        with self._connections_lock:
            if self._closed:
                connection.close()
                raise StoreClosedError(f"the hit store in {self.data_dir} is closed")
            self._connections.append(entry)
        return entry

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > STORE_VERSION:
            raise StoreError(f"{self.database_path} has store version {version}, this program reads up to "
                             f"{STORE_VERSION}; use a newer edge-analytics")
        # auto_vacuum takes effect only before the first table exists. INCREMENTAL lets retention hand the
        # pages of deleted rows back to the file system, so that the size cap measures the database shrink.
        connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
        if connection.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            log.warning("hit store %s: WAL mode is not available on this file system; searches will wait "
                        "for writes", self.database_path)
        connection.executescript(_SCHEMA)
        if version == 1:
            # Version 2 adds the camera's configured name, which health messages carry since then.
            connection.execute("ALTER TABLE cameras ADD COLUMN camera_name TEXT")
        connection.execute(f"PRAGMA user_version={STORE_VERSION}")

    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the write lock and run one IMMEDIATE transaction on this thread's connection."""
        with self._write_lock, self._use() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                _roll_back(connection)
                raise
            connection.execute("COMMIT")

    @contextmanager
    def _read_transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the reads of the block on one snapshot of the database."""
        with self._use() as connection:
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                connection.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection, each after its thread's current call returns.

        Later calls raise StoreClosedError. Stop the intake and the retention task first, so that none of
        them fails in the middle of its work.
        """
        with self._connections_lock:
            self._closed = True
            entries, self._connections = self._connections, []
        # One lock at a time: a thread that waits here for the write lock gets it once its holder is done.
        for entry in entries:
            with entry.lock:
                entry.connection.close()

    # Hits

    def add(self, message: FeedMessage) -> StoredHit | None:
        """Store a `plate` or `hit.` message with its images; return the new hit.

        Returns None for other topics and for a message already stored (same publisher, run and sequence).
        Raises InvalidHitError when a field that the store needs is missing or the schema is unsupported,
        and StoreError when the database or a file cannot be written.
        """
        if not is_stored_topic(message.topic):
            return None
        now = self._clock()
        received_at = utc_iso(now)
        row = _hit_row(message.topic, message.header, received_at)
        written: list[Path] = []
        try:
            with self._write_lock, self._use() as connection:
                run = self._publisher_run(connection, row.publisher_id)
                exists = connection.execute(
                    "SELECT 1 FROM hits WHERE publisher_id = ? AND run = ? AND sequence = ?",
                    (row.publisher_id, run, row.sequence),
                ).fetchone()
                if exists:
                    return None
                snapshot_path, crop_path, media_bytes = self._write_images(row, run, now, message.images, written)
                connection.execute("BEGIN IMMEDIATE")
                try:
                    hit_id = self._insert_hit(connection, row, run, now, received_at, snapshot_path, crop_path,
                                              media_bytes, message.header)
                    connection.execute(
                        "UPDATE publishers SET last_sequence = MAX(COALESCE(last_sequence, 0), ?) "
                        "WHERE publisher_id = ?",
                        (row.sequence, row.publisher_id),
                    )
                except BaseException:
                    _roll_back(connection)
                    raise
                connection.execute("COMMIT")
        except (StoreError, OSError) as error:
            _remove_files(written)
            if isinstance(error, StoreClosedError):
                raise
            raise StoreError(f"cannot store {message.topic} #{row.sequence} from {row.publisher_id} in "
                             f"{self.data_dir}: {error}") from error
        return StoredHit(
            id=hit_id, publisher_id=row.publisher_id, sequence=row.sequence, topic=row.topic,
            camera_id=row.camera_id, frame_time=row.frame_time, received_at=received_at, track_id=row.track_id,
            plate_text=row.plate_text, plate_type=row.plate_type, plate_colour=row.plate_colour,
            confidence=row.confidence, person_name=row.person_name, similarity=row.similarity,
            list_name=row.list_name, entry_pattern=row.entry_pattern, reason=row.reason, box_xyxy=row.box_xyxy,
            snapshot_path=snapshot_path, crop_path=crop_path, header=message.header, acked_by=None, acked_at=None,
            ack_note=None,
        )

    def _publisher_run(self, connection: sqlite3.Connection, publisher_id: str) -> int:
        """Return the publisher's current run, adding the publisher with run 1 when it is new."""
        row = connection.execute("SELECT run FROM publishers WHERE publisher_id = ?", (publisher_id,)).fetchone()
        if row is not None:
            return row[0]
        connection.execute("INSERT INTO publishers (publisher_id, run, last_sequence) VALUES (?, 1, NULL)",
                           (publisher_id,))
        return 1

    def _write_images(self, row: _HitRow, run: int, now: float, images: list[bytes], written: list[Path]
                      ) -> tuple[str | None, str | None, int]:
        """Write the snapshot and the crop; return their paths relative to data_dir and their total size.

        Each file is synced before this returns, so it is on disk before the row that names it. Paths of
        the files written so far are appended to `written`, so that the caller can remove them on error.
        """
        day = datetime.fromtimestamp(now, tz=timezone.utc).date().isoformat()
        folder = self.media_dir / day
        stem = f"{_file_name_prefix(row.publisher_id)}-r{run}-{row.sequence}"
        paths: list[str | None] = []
        media_bytes = 0
        for kind, image in zip(("snapshot", "crop"), (*images[:2], None, None)):
            if image is None:
                paths.append(None)
                continue
            if not image.startswith(_JPEG_MAGIC):
                log.warning("%s #%d from %s: the %s is not a JPEG (starts with %r); it is not stored",
                            row.topic, row.sequence, row.publisher_id, kind, image[:4])
                paths.append(None)
                continue
            if not written:
                folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{stem}-{kind}.jpg"
            _write_synced(path, image)
            written.append(path)
            paths.append(f"{MEDIA_DIR}/{day}/{path.name}")
            media_bytes += len(image)
        if written:
            _sync_folder(folder)
        return paths[0], paths[1], media_bytes

    def _insert_hit(self, connection: sqlite3.Connection, row: _HitRow, run: int, now: float, received_at: str,
                    snapshot_path: str | None, crop_path: str | None, media_bytes: int, header: dict) -> int:
        cursor = connection.execute(
            "INSERT INTO hits (publisher_id, run, sequence, topic, camera_id, frame_time, received_at, "
            "received_at_s, track_id, plate_text, plate_type, plate_colour, confidence, person_name, similarity, "
            "list_name, entry_pattern, reason, box_xyxy, snapshot_path, crop_path, media_bytes, header) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.publisher_id, run, row.sequence, row.topic, row.camera_id, row.frame_time, received_at, now,
             row.track_id, row.plate_text, row.plate_type, row.plate_colour, row.confidence, row.person_name,
             row.similarity, row.list_name, row.entry_pattern, row.reason,
             None if row.box_xyxy is None else json.dumps(row.box_xyxy), snapshot_path, crop_path, media_bytes,
             json.dumps(header, ensure_ascii=False, separators=(",", ":"))),
        )
        return cursor.lastrowid

    def last_sequence(self, publisher_id: str) -> int | None:
        """Return the highest sequence stored from the publisher's current run, or None when there is none.

        Retention does not lower it, so a replay never fetches hits that retention already deleted.
        """
        with self._use() as connection:
            row = connection.execute("SELECT last_sequence FROM publishers WHERE publisher_id = ?",
                                     (publisher_id,)).fetchone()
        return None if row is None else row[0]

    def start_new_run(self, publisher_id: str) -> int:
        """Record that the publisher's sequence numbers started again at 1; return the new run number.

        Call it when a publisher restarted without its outbox. Its new messages are then stored although
        they reuse sequence numbers of earlier hits, and `last_sequence` returns None until one is stored.
        """
        with self._write_transaction() as connection:
            run = self._publisher_run(connection, publisher_id) + 1
            connection.execute("UPDATE publishers SET run = ?, last_sequence = NULL WHERE publisher_id = ?",
                               (run, publisher_id))
        return run

    def get(self, hit_id: int) -> StoredHit | None:
        with self._use() as connection:
            row = connection.execute(f"SELECT {_HIT_COLUMNS} FROM hits WHERE id = ?", (hit_id,)).fetchone()
        return None if row is None else _stored_hit(row)

    def media_path(self, relative: str) -> Path:
        """Return the absolute path of a stored `snapshot_path` or `crop_path`, which is relative to data_dir.

        Raises MediaPathError when the path is absolute or resolves outside the media folder, for example
        through `..` or a symbolic link. Does not check that the file exists.
        """
        if not relative or "\x00" in relative or Path(relative).is_absolute() or relative.startswith(("/", "\\")):
            raise MediaPathError(f"invalid media path {relative!r}: expected a path relative to the data folder, "
                                 f"such as '{MEDIA_DIR}/2026-12-04/NAME.jpg'")
        media_root = self.media_dir.resolve()
        path = (self.data_dir / relative).resolve()
        if path == media_root or not path.is_relative_to(media_root):
            raise MediaPathError(f"invalid media path {relative!r}: it points outside {self.media_dir}")
        return path

    def acknowledge(self, hit_id: int, user: str, note: str) -> StoredHit:
        """Record that `user` has dealt with the hit, with a note.

        Raises HitNotFoundError for an unknown id, AlreadyAcknowledgedError when the hit was acknowledged
        before (a second one would hide who acted first), and InvalidAckError for an empty user, or a user
        or note above MAX_ACK_USER_CHARS or MAX_ACK_NOTE_CHARS characters.
        """
        user = user.strip()
        if not user:
            raise InvalidAckError("the acknowledging user is empty; pass the logged-in user's name")
        if len(user) > MAX_ACK_USER_CHARS:
            raise InvalidAckError(f"the user name has {len(user)} characters, maximum {MAX_ACK_USER_CHARS}")
        if len(note) > MAX_ACK_NOTE_CHARS:
            raise InvalidAckError(f"the note has {len(note)} characters, maximum {MAX_ACK_NOTE_CHARS}; shorten it")
        with self._write_transaction() as connection:
            updated = connection.execute(
                "UPDATE hits SET acked_by = ?, acked_at = ?, ack_note = ? WHERE id = ? AND acked_at IS NULL",
                (user, utc_iso(self._clock()), note, hit_id),
            ).rowcount
        if not updated:
            existing = self.get(hit_id)
            if existing is None:
                raise HitNotFoundError(f"hit {hit_id} not found; retention may have deleted it")
            raise AlreadyAcknowledgedError(existing)
        hit = self.get(hit_id)
        if hit is None:
            raise HitNotFoundError(f"hit {hit_id} not found; retention deleted it while it was acknowledged")
        return hit

    # Search

    def search(self, query: HitQuery, page: int = 1, page_size: int = 50) -> SearchPage:
        """Return one page of the hits that match `query`, newest frame_time first.

        Raises InvalidQueryError for a page below 1 or a page_size outside 1..MAX_PAGE_SIZE. A page after
        the last one returns no hits.
        """
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise InvalidQueryError(f"invalid page {page!r}: expected a whole number, 1 or more")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidQueryError(f"invalid page_size {page_size!r}: expected 1 to {MAX_PAGE_SIZE}")
        where, parameters = _where_clause(query)
        with self._read_transaction() as connection:
            total = connection.execute(f"SELECT COUNT(*) FROM hits {where}", parameters).fetchone()[0]
            rows = connection.execute(
                f"SELECT {_HIT_COLUMNS} FROM hits {where} ORDER BY frame_time DESC, id DESC LIMIT ? OFFSET ?",
                (*parameters, page_size, (page - 1) * page_size),
            ).fetchall()
        return SearchPage(hits=[_stored_hit(row) for row in rows], total=total, page=page, page_size=page_size,
                          pages=max(1, math.ceil(total / page_size)))

    # Camera health

    def update_health(self, header: dict) -> None:
        """Store the camera counters of a `health` message, one row per publisher and camera.

        Frames per second come from the change of frames_decoded since the camera's previous health
        message, over the change of the daemon's uptime_s (sent_at when uptime_s is missing). After a
        daemon restart, when either goes down, fps is None until the next message.
        Raises InvalidHitError when publisher_id or cameras is missing, and StoreError on a database error.
        """
        _check_schema(header, "health")
        publisher_id = header.get("publisher_id")
        cameras = header.get("cameras")
        if not isinstance(publisher_id, str) or not publisher_id or not isinstance(cameras, list):
            raise InvalidHitError(f"health message without publisher_id or cameras: {_preview(header)}")
        uptime_s = _number(header, "uptime_s")
        sent_at = _iso_or_none(header.get("sent_at"))
        now = self._clock()
        with self._write_transaction() as connection:
            for camera in cameras:
                if isinstance(camera, dict) and isinstance(camera.get("camera_id"), str):
                    self._upsert_camera(connection, publisher_id, camera, uptime_s, sent_at, now)

    def _upsert_camera(self, connection: sqlite3.Connection, publisher_id: str, camera: dict,
                       uptime_s: float | None, sent_at: str | None, now: float) -> None:
        camera_id = camera["camera_id"]
        frames_decoded = _integer(camera, "frames_decoded")
        previous = connection.execute(
            "SELECT frames_decoded, uptime_s, sent_at FROM cameras WHERE publisher_id = ? AND camera_id = ?",
            (publisher_id, camera_id),
        ).fetchone()
        fps = None
        if previous is not None and frames_decoded is not None and previous[0] is not None:
            elapsed_s = _elapsed_s(previous[1], uptime_s, previous[2], sent_at)
            frames = frames_decoded - previous[0]
            if elapsed_s is not None and elapsed_s > 0 and frames >= 0:
                fps = round(frames / elapsed_s, 2)
        connection.execute(
            "INSERT INTO cameras (publisher_id, camera_id, state, frames_decoded, fps, frames_dropped, reconnects, "
            "last_error, last_frame_age_s, uptime_s, sent_at, updated_at, updated_at_s, camera_name) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (publisher_id, camera_id) DO UPDATE SET state = excluded.state, "
            "frames_decoded = excluded.frames_decoded, fps = excluded.fps, frames_dropped = excluded.frames_dropped, "
            "reconnects = excluded.reconnects, last_error = excluded.last_error, "
            "last_frame_age_s = excluded.last_frame_age_s, uptime_s = excluded.uptime_s, sent_at = excluded.sent_at, "
            "updated_at = excluded.updated_at, updated_at_s = excluded.updated_at_s, "
            "camera_name = COALESCE(excluded.camera_name, cameras.camera_name)",
            (publisher_id, camera_id, _text(camera, "state"), frames_decoded, fps, _integer(camera, "frames_dropped"),
             _integer(camera, "reconnects"), _text(camera, "last_error"), _number(camera, "last_frame_age_s"),
             uptime_s, sent_at, utc_iso(now), now, _text(camera, "camera_name")),
        )

    def camera_status(self) -> list[CameraStatus]:
        """Return the latest health of every camera, sorted by publisher, then camera."""
        with self._use() as connection:
            rows = connection.execute(
                "SELECT publisher_id, camera_id, state, frames_decoded, fps, frames_dropped, reconnects, last_error, "
                "last_frame_age_s, updated_at, camera_name FROM cameras ORDER BY publisher_id, camera_id"
            ).fetchall()
        return [CameraStatus(*row) for row in rows]

    # Retention

    def usage(self) -> StorageUsage:
        """Return the bytes that the database and the hits' media files take."""
        with self._read_transaction() as connection:
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            page_count = connection.execute("PRAGMA page_count").fetchone()[0]
            free_pages = connection.execute("PRAGMA freelist_count").fetchone()[0]
            media_bytes = connection.execute("SELECT COALESCE(SUM(media_bytes), 0) FROM hits").fetchone()[0]
        return StorageUsage(database_bytes=(page_count - free_pages) * page_size, media_bytes=media_bytes)

    def apply_retention(self, max_age_days: float, max_bytes: int) -> RetentionReport:
        """Delete hits received more than `max_age_days` ago, then the oldest hits until the database and
        media files take at most about `max_bytes`, each with its files.

        Also deletes camera rows not updated within `max_age_days`, media files that no hit names (at the
        first run, then at most every ORPHAN_SWEEP_INTERVAL_S) and empty day folders. Sizes are file
        lengths, not disk blocks.
        """
        if max_age_days <= 0 or max_bytes <= 0:
            raise ValueError(f"invalid retention max_age_days={max_age_days!r}, max_bytes={max_bytes!r}: "
                             "both must be above 0")
        now = self._clock()
        cutoff_s = now - max_age_days * SECONDS_PER_DAY
        aged = self._delete_hits("WHERE received_at_s < ?", (cutoff_s,))
        oversize = self._delete_over_size(max_bytes)
        with self._write_transaction() as connection:
            deleted_cameras = connection.execute("DELETE FROM cameras WHERE updated_at_s < ?", (cutoff_s,)).rowcount
        orphans = _DeletedFiles(0, 0)
        if self._next_orphan_sweep is None or now >= self._next_orphan_sweep:
            self._next_orphan_sweep = now + ORPHAN_SWEEP_INTERVAL_S
            orphans = self._delete_orphan_files()
        if aged.rows or oversize.rows:
            # Hands the freed pages back to the file system; runs outside a transaction.
            with self._write_lock, self._use() as connection:
                connection.execute("PRAGMA incremental_vacuum")

        report = RetentionReport(
            deleted_rows=aged.rows + oversize.rows,
            deleted_files=aged.files + oversize.files + orphans.files,
            freed_bytes=aged.bytes + oversize.bytes + orphans.bytes,
            deleted_cameras=deleted_cameras,
        )
        if report.deleted_rows or report.deleted_files or report.deleted_cameras:
            log.info("retention in %s: deleted %d hit(s) older than %g days and %d over the %d-byte cap, %d file(s) "
                     "(%d without a hit), %d bytes, and %d camera row(s) not updated for %g days", self.data_dir,
                     aged.rows, max_age_days, oversize.rows, max_bytes, report.deleted_files, orphans.files,
                     report.freed_bytes, deleted_cameras, max_age_days)
        return report

    def _delete_over_size(self, max_bytes: int) -> _DeletedHits:
        usage = self.usage()
        excess = usage.database_bytes + usage.media_bytes - max_bytes
        if excess <= 0:
            return _DeletedHits(0, 0, 0)
        # Oldest first: every hit whose older hits, itself excluded, free less than the excess.
        # The row cost is an estimate, so the total can stay a little over the cap until the next run.
        with self._use() as connection:
            count = connection.execute(
                "SELECT COUNT(*) FROM (SELECT SUM(media_bytes + length(header) + ?) OVER "
                "(ORDER BY received_at_s, id) - (media_bytes + length(header) + ?) AS older_cost FROM hits) "
                "WHERE older_cost < ?",
                (ROW_OVERHEAD_BYTES, ROW_OVERHEAD_BYTES, excess),
            ).fetchone()[0]
        if not count:
            log.warning("hit store %s takes %d bytes with no hit left to delete, above the cap of %d bytes; "
                        "raise retention max_mb", self.data_dir, usage.database_bytes + usage.media_bytes,
                        max_bytes)
            return _DeletedHits(0, 0, 0)
        return self._delete_hits("", (), limit=count)

    def _delete_hits(self, where: str, parameters: tuple, limit: int | None = None) -> _DeletedHits:
        """Delete the hits that match `where`, or the `limit` oldest of them, with their files, in batches."""
        deleted = _DeletedHits(0, 0, 0)
        while limit is None or deleted.rows < limit:
            batch = RETENTION_BATCH_ROWS if limit is None else min(RETENTION_BATCH_ROWS, limit - deleted.rows)
            # Rows are committed as deleted before their files go, so a crash leaves files without a row,
            # never a row without its files. The lock keeps `add` from rewriting a file while it is deleted.
            with self._write_transaction() as connection:
                rows = connection.execute(
                    f"SELECT id, snapshot_path, crop_path FROM hits {where} ORDER BY received_at_s, id LIMIT ?",
                    (*parameters, batch),
                ).fetchall()
                if not rows:
                    break
                connection.executemany("DELETE FROM hits WHERE id = ?", [(row[0],) for row in rows])
            with self._write_lock:
                files = self._delete_media([path for row in rows for path in row[1:] if path])
            deleted = _DeletedHits(deleted.rows + len(rows), deleted.files + files.files, deleted.bytes + files.bytes)
            if len(rows) < batch:
                break
        return deleted

    def _delete_media(self, relative_paths: list[str]) -> _DeletedFiles:
        count = freed = 0
        folders = set()
        for relative in relative_paths:
            try:
                path = self.media_path(relative)
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            except (OSError, MediaPathError) as error:
                log.warning("retention cannot delete %s: %s", relative, error)
                continue
            count += 1
            freed += size
            folders.add(path.parent)
        for folder in folders:
            _remove_if_empty(folder)
        return _DeletedFiles(count, freed)

    def _delete_orphan_files(self) -> _DeletedFiles:
        """Delete files in day folders that no hit names and that are older than ORPHAN_GRACE_S, and empty folders."""
        count = freed = 0
        for folder in sorted(self.media_dir.iterdir()):
            if not folder.is_dir() or not _DAY_FOLDER.match(folder.name):
                continue
            try:
                day_start = datetime.combine(date.fromisoformat(folder.name), datetime.min.time(), timezone.utc)
            except ValueError:
                continue
            day_start_s = day_start.timestamp()
            with self._use() as connection:
                rows = connection.execute(
                    "SELECT snapshot_path, crop_path FROM hits WHERE received_at_s >= ? AND received_at_s < ?",
                    (day_start_s, day_start_s + SECONDS_PER_DAY),
                ).fetchall()
            referenced = {path for row in rows for path in row}
            candidates = [entry for entry in folder.iterdir()
                          if f"{MEDIA_DIR}/{folder.name}/{entry.name}" not in referenced]
            # Under the lock, a file that is still old cannot be one that `add` is writing right now.
            with self._write_lock:
                for path in candidates:
                    try:
                        stat = path.stat()
                        if not path.is_file() or time.time() - stat.st_mtime < ORPHAN_GRACE_S:
                            continue
                        path.unlink()
                    except OSError as error:
                        log.warning("retention cannot delete %s, which no hit names: %s", path, error)
                        continue
                    count += 1
                    freed += stat.st_size
                _remove_if_empty(folder)
        return _DeletedFiles(count, freed)


@dataclass(frozen=True)
class _ThreadConnection:
    connection: sqlite3.Connection
    lock: threading.RLock  # held by the owning thread while it uses the connection, and by close()


@dataclass(frozen=True)
class _DeletedHits:
    rows: int
    files: int
    bytes: int


@dataclass(frozen=True)
class _DeletedFiles:
    files: int
    bytes: int


# Header fields


def _hit_row(topic: str, header: dict, received_at: str) -> _HitRow:
    """Take the column values of a hit from its header; raise InvalidHitError when a needed field is missing.

    frame_time falls back to sent_at, then to `received_at`, when the header has no valid time.
    """
    _check_schema(header, topic)
    publisher_id = header.get("publisher_id")
    sequence = header.get("sequence")
    camera_id = header.get("camera_id")
    if not isinstance(publisher_id, str) or not publisher_id:
        raise InvalidHitError(f"{topic} message without a publisher_id: {_preview(header)}")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
        raise InvalidHitError(f"{topic} message from {publisher_id} with invalid sequence {sequence!r}: "
                              "expected a whole number, 0 or more")
    if not isinstance(camera_id, str) or not camera_id:
        raise InvalidHitError(f"{topic} #{sequence} from {publisher_id} has no camera_id")

    plate = _object(header, "plate")
    watchlist = _object(header, "watchlist")
    person = _object(header, "person")
    # A face hit shows the face box; a plate shows the vehicle's box.
    box_owner = _object(header, "face") if person else _object(header, "vehicle")
    frame_time = _iso_or_none(header.get("frame_time")) or _iso_or_none(header.get("sent_at")) or received_at
    return _HitRow(
        publisher_id=publisher_id,
        sequence=sequence,
        topic=topic,
        camera_id=camera_id,
        frame_time=frame_time,
        track_id=_integer(header, "track_id"),
        plate_text=_text(plate, "text"),
        plate_type=_text(plate, "type"),
        plate_colour=_text(plate, "colour"),
        confidence=_number(plate, "confidence"),
        person_name=_text(person, "name"),
        similarity=_number(header, "similarity"),
        list_name=_text(watchlist, "list_name") or _text(person, "list_name"),
        entry_pattern=_text(watchlist, "pattern"),
        reason=_text(watchlist, "reason") or _text(person, "reason"),
        box_xyxy=_box(box_owner.get("box_xyxy")),
    )


def _check_schema(header: dict, topic: str) -> None:
    schema = header.get("schema")
    if schema != SCHEMA_VERSION:
        raise InvalidHitError(f"{topic} message with schema {schema!r} from {header.get('publisher_id')!r}: "
                              f"this store reads schema {SCHEMA_VERSION}; upgrade the web service")


def _object(parent: dict, key: str) -> dict:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _text(parent: dict, key: str) -> str | None:
    """Return the text at `key`, cut to MAX_FEED_TEXT_CHARS, or None when it is missing or not text."""
    value = parent.get(key)
    if not isinstance(value, str):
        return None
    return value if len(value) <= MAX_FEED_TEXT_CHARS else value[:MAX_FEED_TEXT_CHARS - 1] + "…"


def _number(parent: dict, key: str) -> float | None:
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _integer(parent: dict, key: str) -> int | None:
    value = parent.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _box(value: object) -> list[float] | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return [float(v) for v in value]


def _iso_or_none(value: object) -> str | None:
    """Return a feed time such as `2026-12-04T21:38:13.211Z` in the store's UTC form, or None when invalid.

    The form is fixed, so that text comparison orders times. A time without an offset is taken as UTC.
    """
    if not isinstance(value, str):
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return _utc_text(parsed)


def _utc_text(moment: datetime) -> str:
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _elapsed_s(previous_uptime_s: float | None, uptime_s: float | None, previous_sent_at: str | None,
               sent_at: str | None) -> float | None:
    if previous_uptime_s is not None and uptime_s is not None:
        return uptime_s - previous_uptime_s
    if previous_sent_at is not None and sent_at is not None:
        return (_parse_utc(sent_at) - _parse_utc(previous_sent_at)).total_seconds()
    return None


def _parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text[:-1] + "+00:00")


def _preview(header: dict) -> str:
    text = json.dumps(header, ensure_ascii=False)
    return text if len(text) <= 200 else text[:200] + "..."


def _stored_hit(row: tuple) -> StoredHit:
    values = list(row)
    values[17] = None if values[17] is None else json.loads(values[17])  # box_xyxy
    values[20] = json.loads(values[20])  # header
    return StoredHit(*values)


# Search filters


def _where_clause(query: HitQuery) -> tuple[str, tuple]:
    conditions: list[str] = []
    parameters: list[object] = []
    if query.plate is not None:
        plate = normalise_plate_text(query.plate)
        if plate:
            condition, value = _plate_condition(plate, query.plate_mode)
            conditions.append(condition)
            parameters.append(value)
    if query.camera_id is not None:
        # Camera ids are lower case. The text may also be part of an id or of a camera's name as its daemon
        # reports it, which the pages show beside the id, so investigators type either. The subquery keeps
        # the search on the camera_id index of the hits.
        text = query.camera_id.lower()
        conditions.append("camera_id IN (SELECT ? UNION SELECT camera_id FROM cameras "
                          "WHERE instr(camera_id, ?) > 0 OR instr(lower(camera_name), ?) > 0)")
        parameters += [text, text, text]
    if query.since is not None:
        conditions.append("frame_time >= ?")
        parameters.append(_utc_text(query.since))
    if query.until is not None:
        conditions.append("frame_time < ?")
        parameters.append(_utc_text(query.until))
    if query.topic == "hits":
        conditions.append("topic GLOB 'hit.*'")
    elif query.topic is not None:
        conditions.append("topic = ?")
        parameters.append(query.topic)
    if query.list_name is not None:
        conditions.append("list_name = ?")
        parameters.append(query.list_name)
    where = "WHERE " + " AND ".join(conditions) if conditions else ""
    return where, tuple(parameters)


def _plate_condition(plate: str, mode: str) -> tuple[str, str]:
    """Return the SQL condition and its parameter for a normalised plate query.

    GLOB, not LIKE, because GLOB is case-sensitive like the stored upper-case text, so SQLite can use the
    plate index for a fixed prefix. Its metacharacters `*`, `?` and `[` are escaped as `[*]`, `[?]` and
    `[[]` wherever they are not the user's wildcards. LIKE's `%` and `_` are plain characters in GLOB.
    """
    if mode == "exact":
        return "plate_text = ?", plate
    if mode == "prefix":
        return "plate_text GLOB ?", _glob_literal(plate) + "*"
    while ANY_RUN + ANY_RUN in plate:
        plate = plate.replace(ANY_RUN + ANY_RUN, ANY_RUN)
    pattern = "".join(character if character in (ANY_RUN, ANY_ONE) else _glob_literal(character)
                      for character in plate)
    return "plate_text GLOB ?", pattern


def _glob_literal(text: str) -> str:
    return "".join(f"[{character}]" if character in "*?[" else character for character in text)


# Files


def _file_name_prefix(publisher_id: str) -> str:
    """Return a file-name-safe prefix for a publisher: its safe characters and a hash that keeps ids apart."""
    safe = _UNSAFE_NAME_CHARACTERS.sub("_", publisher_id)[:40].strip("_") or "publisher"
    digest = hashlib.sha256(publisher_id.encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}"


def _write_synced(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and sync it, so `path` is never a partial file."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _sync_folder(folder: Path) -> None:
    """Sync a folder so that the names of files just created in it survive a power cut."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _roll_back(connection: sqlite3.Connection) -> None:
    # SQLite rolls some failed transactions back by itself, for example on a full disk; a second
    # ROLLBACK would then fail and hide the original error.
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            log.warning("cannot remove %s after a failed store: %s; retention removes it later", path, error)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty, or already gone
