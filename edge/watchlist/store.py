"""SQLite store of the plate and face watchlists, with an append-only audit log and a change counter.

The CLI writes the database while the daemon reads it from another process. WAL mode lets
readers run during a write, every call opens its own connection, and a busy timeout makes a
second writer wait for the first instead of failing.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import io
import json
import logging
import os
import sqlite3
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edge.plates.grammar import normalise_plate_text
from edge.watchlist.plates import (
    InvalidEntryError,
    PlateEntry,
    WatchlistError,
    check_pattern_can_match,
    normalise_pattern,
    validate_max_edits,
)

log = logging.getLogger(__name__)

DATABASE_NAME = "watchlists.sqlite"
SCHEMA_VERSION = 2
# Maximum wait in seconds for another process's write lock before a call fails.
BUSY_TIMEOUT_S = 10.0
MAX_TEXT_LENGTH = 200
ACTIONS = (
    "plate.add", "plate.remove", "plate.import", "face.add", "face.remove", "face.reembed", "watchlist.sync"
)
CSV_COLUMNS = ("pattern", "reason", "list_name", "max_edits")

_AUDIT_LOG_TABLE = f"""
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN {ACTIONS}),
    detail TEXT NOT NULL
);"""
_AUDIT_LOG_TRIGGERS = """
-- The audit log is append-only. This stops mistakes made through SQLite, not someone who edits the file.
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"""

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS plate_entries (
    id INTEGER PRIMARY KEY,
    pattern TEXT NOT NULL,
    max_edits INTEGER NOT NULL CHECK (max_edits BETWEEN 0 AND 2),
    reason TEXT NOT NULL,
    list_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (pattern, list_name)
);
CREATE TABLE IF NOT EXISTS face_persons (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    list_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
-- Enrolment photos are kept so a new embedding model can re-embed the gallery without asking for them again.
CREATE TABLE IF NOT EXISTS face_photos (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL,
    photo BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS face_embeddings (
    photo_id INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (photo_id, model_id)
);
{_AUDIT_LOG_TABLE}
{_AUDIT_LOG_TRIGGERS}
CREATE TABLE IF NOT EXISTS watchlist_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO watchlist_version (id, version) VALUES (1, 0);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

# Version 2 adds the action 'watchlist.sync'. SQLite cannot change a CHECK constraint in place, so the rows
# move to a new audit table. Dropping the old table drops its triggers and fires none of them. Two processes
# that migrate at once both end with the same rows, because the second one copies the first one's table.
_MIGRATE_1_TO_2 = f"""
BEGIN IMMEDIATE;
ALTER TABLE audit_log RENAME TO audit_log_v1;
{_AUDIT_LOG_TABLE}
INSERT INTO audit_log (id, at, actor, action, detail) SELECT id, at, actor, action, detail FROM audit_log_v1;
DROP TABLE audit_log_v1;
{_AUDIT_LOG_TRIGGERS}
PRAGMA user_version = 2;
COMMIT;
"""


class WatchlistStoreError(WatchlistError):
    """The watchlist database cannot be opened, read or written."""


@dataclass(frozen=True)
class AuditRecord:
    """One audit log row: who changed the watchlist, when (UTC ISO 8601) and what."""

    id: int
    at: str
    actor: str
    action: str
    detail: dict


@dataclass(frozen=True)
class RejectedRow:
    """A CSV row that was not loaded, with the 1-based line where the row starts and the reason."""

    line: int
    message: str
    key: str = ""  # catalogue key under `watchlist.` for the web page, empty without a translation
    fields: dict = field(default_factory=dict)


@dataclass
class ImportReport:
    """The outcome of a CSV import: the entries loaded and the rows rejected."""

    path: Path
    sha256: str
    loaded: list[PlateEntry] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


def default_database_path() -> Path:
    """Return $EDGE_DATA_DIR/watchlists.sqlite, or ./data/watchlists.sqlite when EDGE_DATA_DIR is unset."""
    data_dir = os.environ.get("EDGE_DATA_DIR")
    return Path(data_dir or "data") / DATABASE_NAME


def validate_text(name: str, value: object, hint: str) -> str:
    """Return `value` without surrounding whitespace, or raise InvalidEntryError naming `name`."""
    if not isinstance(value, str):
        raise InvalidEntryError(f"invalid {name} {value!r}: expected text; {hint}")
    text = value.strip()
    slug = name.replace(" ", "_")
    if not text:
        raise InvalidEntryError(f"{name} is empty; {hint}", f"reject_empty_{slug}")
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidEntryError(
            f"{name} {text[:40]!r}... has {len(text)} characters, maximum {MAX_TEXT_LENGTH}; shorten it",
            f"reject_too_long_{slug}", limit=MAX_TEXT_LENGTH
        )
    # Control characters such as line breaks would garble the terminal output and the audit log.
    if any(unicodedata.category(character) == "Cc" for character in text):
        raise InvalidEntryError(f"invalid {name} {text!r}: remove the line breaks and control characters",
                                f"reject_control_{slug}")
    return text


def resolve_actor(actor: str | None) -> str:
    """Return the validated actor, or the OS user name when `actor` is None."""
    if actor is None:
        try:
            actor = getpass.getuser()
        except (OSError, KeyError, ImportError) as error:
            raise InvalidEntryError(
                f"cannot find the OS user name for the audit log ({error}); pass --actor NAME"
            ) from None
    return validate_text("actor", actor, "pass --actor NAME with the person responsible for the change")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _entry_detail(entry: PlateEntry) -> dict:
    return {
        "id": entry.id,
        "pattern": entry.pattern,
        "max_edits": entry.max_edits,
        "list_name": entry.list_name,
        "reason": entry.reason,
    }


class WatchlistStore:
    """The watchlist database at `path`, created with its parent folders when missing."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_database_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WatchlistStoreError(
                f"cannot create the folder {self.path.parent} for the watchlist database: {error}; "
                "pass --db PATH or set EDGE_DATA_DIR to a writable folder"
            ) from None
        self._create_schema()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None leaves transactions to the explicit BEGIN statements below.
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as error:
            raise self._store_error(error) from error
        try:
            yield connection
        except sqlite3.Error as error:
            raise self._store_error(error) from error
        finally:
            connection.close()

    @contextmanager
    def transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock before the first read. A deferred transaction that
        # reads and then writes can fail with "database is locked" at once, without waiting.
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.execute("COMMIT")

    def _store_error(self, error: sqlite3.Error) -> WatchlistStoreError:
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            hint = f"another process held the database for more than {BUSY_TIMEOUT_S:g} s; retry"
        else:
            hint = "check that it is a watchlist database and that this user can write the file and its folder"
        return WatchlistStoreError(f"watchlist database {self.path} failed: {error}; {hint}")

    def _create_schema(self) -> None:
        with self._connect() as connection:
            schema_version = connection.execute("PRAGMA user_version").fetchone()[0]
            if schema_version > SCHEMA_VERSION:
                raise WatchlistStoreError(
                    f"watchlist database {self.path} has schema version {schema_version}, but this version of edge "
                    f"reads up to {SCHEMA_VERSION}; upgrade edge"
                )
            if schema_version == 0:
                tables = [row[0] for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
                if tables:
                    raise WatchlistStoreError(
                        f"{self.path} is a SQLite database of something else (tables: {', '.join(tables[:5])}), "
                        "not a watchlist database; give the path of the watchlist database (watchlist_db)"
                    )
            # WAL mode is stored in the file, so it is set only once.
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            if schema_version < SCHEMA_VERSION:
                try:
                    connection.executescript(_MIGRATE_1_TO_2 if schema_version == 1 else _SCHEMA)
                except sqlite3.Error:
                    if connection.in_transaction:
                        connection.rollback()
                    raise

    def append_audit(self, connection: sqlite3.Connection, actor: str, action: str, detail: dict) -> None:
        # Each change writes its audit row and increments the version in the same transaction.
        connection.execute(
            "INSERT INTO audit_log (at, actor, action, detail) VALUES (?, ?, ?, ?)",
            (utc_now(), actor, action, json.dumps(detail, ensure_ascii=False)),
        )
        connection.execute("UPDATE watchlist_version SET version = version + 1 WHERE id = 1")

    def _insert_entry(
        self, connection: sqlite3.Connection, pattern: str, max_edits: int, reason: str, list_name: str, actor: str
    ) -> PlateEntry:
        created_at = utc_now()
        cursor = connection.execute(
            "INSERT INTO plate_entries (pattern, max_edits, reason, list_name, created_at, created_by) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (pattern, max_edits, reason, list_name, created_at, actor),
        )
        return PlateEntry(cursor.lastrowid, pattern, max_edits, reason, list_name, created_at, actor)

    def add_plate(
        self, pattern: str, reason: str, list_name: str, max_edits: int = 0, actor: str | None = None
    ) -> PlateEntry:
        """Insert one entry and its audit row. Raise InvalidEntryError for an invalid value or a duplicate."""
        pattern, reason, list_name, max_edits = validate_entry(pattern, reason, list_name, max_edits)
        actor = resolve_actor(actor)
        with self.transaction(write=True) as connection:
            existing = connection.execute(
                "SELECT id FROM plate_entries WHERE pattern = ? AND list_name = ?", (pattern, list_name)
            ).fetchone()
            if existing:
                raise InvalidEntryError(
                    f"pattern '{pattern}' is already on list '{list_name}' as entry {existing[0]}; "
                    f"to change it, remove entry {existing[0]} and add it again",
                    "duplicate_plate", pattern=pattern, list_name=list_name, entry_id=existing[0]
                )
            entry = self._insert_entry(connection, pattern, max_edits, reason, list_name, actor)
            self.append_audit(connection, actor, "plate.add", _entry_detail(entry))
        log.debug("watchlist entry %s added by %s: %s", entry.id, actor, entry.pattern)
        return entry

    def remove_plate(self, target: int | str, actor: str | None = None, list_name: str | None = None) -> int:
        """Delete the entry with id `target`, or every entry with pattern `target`, and return how many.

        With `list_name`, only entries on that list are deleted. Nothing is audited when nothing matched.
        """
        actor = resolve_actor(actor)
        if isinstance(target, bool) or not isinstance(target, (int, str)):
            raise InvalidEntryError(f"invalid entry to remove {target!r}: give an entry id or a plate pattern")
        if isinstance(target, int):
            conditions, values = ["id = ?"], [target]
        else:
            conditions, values = ["pattern = ?"], [normalise_pattern(target)]
        if list_name is not None:
            conditions.append("list_name = ?")
            values.append(list_name)
        detail = {"target": values[0], **({"list_name": list_name} if list_name is not None else {})}
        return len(self._remove_where(" AND ".join(conditions), values, actor, "plate.remove", detail))

    def remove_entry(self, entry_id: int, actor: str | None = None) -> PlateEntry | None:
        """Delete the entry with id `entry_id` and return it, or return None when there is none."""
        actor = resolve_actor(actor)
        removed = self._remove_where("id = ?", [entry_id], actor, "plate.remove", {"target": entry_id})
        return removed[0] if removed else None

    def remove_list(self, list_name: str, actor: str | None = None) -> int:
        """Delete every entry on `list_name` and return how many; nothing is audited when the list is empty."""
        actor = resolve_actor(actor)
        return len(self._remove_where("list_name = ?", [list_name], actor, "plate.remove", {"list_name": list_name}))

    def _remove_where(self, condition: str, values: list, actor: str, action: str,
                      detail: dict) -> list[PlateEntry]:
        with self.transaction(write=True) as connection:
            rows = connection.execute(
                "SELECT id, pattern, max_edits, reason, list_name, created_at, created_by FROM plate_entries "
                f"WHERE {condition}",
                values,
            ).fetchall()
            if not rows:
                return []
            connection.execute(f"DELETE FROM plate_entries WHERE {condition}", values)
            removed = [PlateEntry(*row) for row in rows]
            self.append_audit(connection, actor, action, {**detail, "removed": [_entry_detail(e) for e in removed]})
        log.debug("%d watchlist entries removed by %s: %s", len(rows), actor, detail)
        return removed

    def replace_plate_entries(self, connection: sqlite3.Connection, entries: list[PlateEntry]) -> bool:
        """Replace every plate entry with `entries`, keeping their ids, inside the caller's write transaction.

        Return False and write nothing when the stored entries already have the same ids and values
        (`created_at` and `created_by` aside). The caller validates the entries and appends the audit row,
        so the change and its record commit together.
        """
        def comparable(entry: PlateEntry) -> tuple:
            return entry.id, entry.pattern, entry.max_edits, entry.reason, entry.list_name

        # _select_entries orders by id, and the ids are unique, so sorting the tuples orders them the same way.
        if [comparable(entry) for entry in _select_entries(connection)] == sorted(map(comparable, entries)):
            return False
        connection.execute("DELETE FROM plate_entries")
        connection.executemany(
            "INSERT INTO plate_entries (id, pattern, max_edits, reason, list_name, created_at, created_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.id, e.pattern, e.max_edits, e.reason, e.list_name, e.created_at, e.created_by) for e in entries],
        )
        return True

    def list_plates(self) -> list[PlateEntry]:
        """Return every entry, oldest first."""
        with self.transaction(write=False) as connection:
            return _select_entries(connection)

    def search_plates(self, text: str | None = None, list_name: str | None = None, page: int = 1,
                      page_size: int = 100) -> tuple[list[PlateEntry], int]:
        """Return one page of the entries, newest first, and how many match in all.

        `text` matches patterns that contain it after normalisation; `list_name` matches exactly.
        """
        conditions, values = [], []
        if text:
            conditions.append("instr(pattern, ?) > 0")
            values.append(normalise_plate_text(text))
        if list_name:
            conditions.append("list_name = ?")
            values.append(list_name)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self.transaction(write=False) as connection:
            total = connection.execute(f"SELECT COUNT(*) FROM plate_entries {where}", values).fetchone()[0]
            rows = connection.execute(
                "SELECT id, pattern, max_edits, reason, list_name, created_at, created_by FROM plate_entries "
                f"{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                [*values, page_size, (max(page, 1) - 1) * page_size],
            ).fetchall()
        return [PlateEntry(*row) for row in rows], total

    def plate_lists(self) -> list[tuple[str, int]]:
        """Return each list name with its number of entries, by name."""
        with self.transaction(write=False) as connection:
            return [tuple(row) for row in connection.execute(
                "SELECT list_name, COUNT(*) FROM plate_entries GROUP BY list_name ORDER BY list_name")]

    def load_snapshot(self) -> tuple[int, list[PlateEntry]]:
        """Return the version and the entries, read in one transaction so that they agree."""
        with self.transaction(write=False) as connection:
            version = connection.execute("SELECT version FROM watchlist_version WHERE id = 1").fetchone()[0]
            return version, _select_entries(connection)

    def version(self) -> int:
        """Return the change counter, which every add, remove and import increments."""
        with self._connect() as connection:
            return connection.execute("SELECT version FROM watchlist_version WHERE id = 1").fetchone()[0]

    def audit_log(self, limit: int = 50) -> list[AuditRecord]:
        """Return the latest `limit` audit rows, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidEntryError(f"invalid audit limit {limit!r}: use a whole number of 1 or more")
        with self.transaction(write=False) as connection:
            rows = connection.execute(
                "SELECT id, at, actor, action, detail FROM audit_log ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [AuditRecord(row[0], row[1], row[2], row[3], json.loads(row[4])) for row in rows]

    def import_plates_csv(self, path: Path | str, actor: str | None = None) -> ImportReport:
        """Load the valid rows of a CSV file in one transaction and report the rejected ones.

        The file is UTF-8, with or without a byte order mark, and starts with the header
        pattern,reason,list_name,max_edits in any order. The max_edits column and its cells may be
        left out, meaning 0. A row is rejected when a value is invalid or its pattern is already
        on its list. One audit row records the import unless no row was loaded.
        """
        path = Path(path)
        actor = resolve_actor(actor)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InvalidEntryError(f"cannot read CSV file {path}: {error.strerror}") from None
        report = ImportReport(path=path, sha256=hashlib.sha256(data).hexdigest())
        rows = _parse_csv(path, data, report.rejected)

        with self.transaction(write=True) as connection:
            stored_ids = {
                (pattern, list_name): entry_id
                for entry_id, pattern, list_name in connection.execute(
                    "SELECT id, pattern, list_name FROM plate_entries"
                )
            }
            first_lines: dict[tuple[str, str], int] = {}
            for line, (pattern, reason, list_name, max_edits) in rows:
                key = (pattern, list_name)
                if key in stored_ids:
                    report.rejected.append(RejectedRow(line, (
                        f"pattern '{pattern}' is already on list '{list_name}' as entry {stored_ids[key]}"
                    ), "reject_already_listed", {"pattern": pattern, "list_name": list_name,
                                                 "entry_id": stored_ids[key]}))
                    continue
                if key in first_lines:
                    report.rejected.append(RejectedRow(line, (
                        f"pattern '{pattern}' on list '{list_name}' repeats line {first_lines[key]}"
                    ), "reject_repeats", {"pattern": pattern, "list_name": list_name, "first_line": first_lines[key]}))
                    continue
                first_lines[key] = line
                report.loaded.append(self._insert_entry(connection, pattern, max_edits, reason, list_name, actor))
            if report.loaded:
                self.append_audit(connection, actor, "plate.import", {
                    "file": str(path.resolve()),
                    "sha256": report.sha256,
                    "loaded": len(report.loaded),
                    "rejected_lines": sorted(row.line for row in report.rejected),
                    "entries": [_entry_detail(entry) for entry in report.loaded],
                })
        report.rejected.sort(key=lambda row: row.line)
        log.debug("%s imported by %s: %d loaded, %d rejected", path, actor, len(report.loaded),
                  len(report.rejected))
        return report


def validate_entry(
    pattern: object, reason: object, list_name: object, max_edits: object
) -> tuple[str, str, str, int]:
    """Return the normalised pattern, reason, list name and max_edits, or raise InvalidEntryError."""
    normalised = normalise_pattern(pattern)
    checked_max_edits = validate_max_edits(max_edits, normalised)
    check_pattern_can_match(normalised, checked_max_edits)
    checked_reason = validate_text("reason", reason, "say why the plate is watched, such as a case number")
    checked_list = validate_text("list name", list_name, "name the list, such as 'stolen-vehicles'")
    return normalised, checked_reason, checked_list, checked_max_edits


def _select_entries(connection: sqlite3.Connection) -> list[PlateEntry]:
    rows = connection.execute(
        "SELECT id, pattern, max_edits, reason, list_name, created_at, created_by FROM plate_entries ORDER BY id"
    )
    return [PlateEntry(*row) for row in rows]


def _parse_csv(
    path: Path, data: bytes, rejected: list[RejectedRow]
) -> list[tuple[int, tuple[str, str, str, int]]]:
    """Return (line, validated values) for each valid row and append the invalid ones to `rejected`.

    Raise InvalidEntryError when the whole file is unusable: not UTF-8, no header or wrong columns.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidEntryError(
            f"CSV file {path} is not UTF-8 (invalid byte at offset {error.start}); save it as UTF-8, "
            "for example with Excel's 'CSV UTF-8' format", "import_not_utf8", offset=error.start
        ) from None

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidEntryError(f"CSV file {path} is empty; it needs the header row {','.join(CSV_COLUMNS)}",
                                    "import_empty", columns=",".join(CSV_COLUMNS))
        _check_header(path, [name.strip() for name in header])
        columns = [name.strip().lower() for name in header]

        rows = []
        next_line = reader.line_num + 1
        for fields in reader:
            # A quoted field can span lines, so a row starts where the previous one ended.
            line, next_line = next_line, reader.line_num + 1
            if not any(value.strip() for value in fields):
                continue
            if len(fields) != len(columns):
                rejected.append(RejectedRow(line, f"{len(fields)} fields, expected {len(columns)} "
                                                  f"({','.join(columns)})", "reject_field_count",
                                            {"count": len(fields), "expected": len(columns)}))
                continue
            values = dict(zip(columns, fields))
            try:
                rows.append((line, _validate_csv_row(values)))
            except InvalidEntryError as error:
                rejected.append(RejectedRow(line, str(error), error.key, error.fields))
    except csv.Error as error:
        raise InvalidEntryError(f"CSV file {path} line {reader.line_num}: {error}", "import_csv_error",
                                line=reader.line_num) from None
    return rows


def _check_header(path: Path, names: list[str]) -> None:
    """Raise InvalidEntryError for missing, unknown or repeated columns. `names` are as the file spells them."""
    columns = [name.lower() for name in names]
    required = [name for name in CSV_COLUMNS if name != "max_edits"]
    missing = [name for name in required if name not in columns]
    unknown = [name for name, column in zip(names, columns) if column not in CSV_COLUMNS]
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if missing or unknown or repeated:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(repr(name) for name in unknown)}")
        if repeated:
            problems.append(f"repeated {', '.join(repeated)}")
        raise InvalidEntryError(
            f"CSV file {path} has an invalid header row ({'; '.join(problems)}); "
            f"expected the columns {','.join(CSV_COLUMNS)}", "import_bad_header",
            missing=", ".join(missing), unknown=", ".join(unknown), repeated=", ".join(repeated),
            columns=",".join(CSV_COLUMNS)
        )


def _validate_csv_row(values: dict[str, str]) -> tuple[str, str, str, int]:
    cell = values.get("max_edits", "").strip()
    if not cell:
        max_edits = 0
    else:
        try:
            max_edits = int(cell)
        except ValueError:
            raise InvalidEntryError(f"invalid max_edits {cell!r}: use 0, 1 or 2", "reject_max_edits",
                                    value=cell) from None
    return validate_entry(values["pattern"], values["reason"], values["list_name"], max_edits)
