"""Append-only audit log of logins, searches, exports and changes, kept in the web service's SQLite file.

Users, sessions and the audit log share `<data_dir>/web.sqlite3`, so a change to a user commits in
the same transaction as its audit row. Every call opens its own connection, because aiohttp
handlers and the password-hashing threads both use the file. WAL mode lets readers run during a
write, and a busy timeout makes a second writer wait instead of failing.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

DATABASE_NAME = "web.sqlite3"
# Maximum wait in seconds for another connection's write lock before a call fails.
BUSY_TIMEOUT_S = 10.0
MAX_PAGE_SIZE = 200

ACTIONS = (
    "login",
    "login_failed",
    "logout",
    "search",
    "view_hit",
    "export",
    "acknowledge",
    "watchlist_plate_add",
    "watchlist_plate_remove",
    "watchlist_plate_import",
    "watchlist_face_add",
    "watchlist_face_remove",
    "user_add",
    "user_role",
    "user_password",
    "user_disable",
    "password_change_failed",
    "forbidden",
)
# Detail keys containing these words are rejected, so that a secret cannot reach the append-only log.
SECRET_KEY_WORDS = ("password", "token", "secret")

# The action list is checked in Python and not by a CHECK constraint, so a new action needs no migration.
_AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    user TEXT,
    action TEXT NOT NULL,
    client_address TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_user ON audit_events (user);
CREATE INDEX IF NOT EXISTS audit_events_action ON audit_events (action);
-- Append-only: this stops changes made through SQLite, not someone who edits the file itself.
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
"""


class WebDatabaseError(Exception):
    """The web service database cannot be opened, read or written."""


def database_path(data_dir: Path) -> Path:
    return Path(data_dir) / DATABASE_NAME


def _database_error(path: Path, error: sqlite3.Error) -> WebDatabaseError:
    if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
        hint = f"another connection held the write lock for more than {BUSY_TIMEOUT_S:g} s; retry"
    else:
        hint = "check that this user can write the file and its folder"
    return WebDatabaseError(f"web database {path} failed: {error}; {hint}")


@contextmanager
def transaction(path: Path, write: bool) -> Iterator[sqlite3.Connection]:
    """Open a connection to `path` and run one transaction, committed on success and rolled back on error.

    Rows are sqlite3.Row, so columns can be read by name. sqlite3 errors are raised as WebDatabaseError. A write transaction takes the write lock at
    BEGIN IMMEDIATE, because a deferred one that reads and then writes fails at once when locked.
    """
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as error:
        raise _database_error(path, error) from error
    connection.row_factory = sqlite3.Row
    try:
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.execute("COMMIT")
    except sqlite3.Error as error:
        raise _database_error(path, error) from error
    finally:
        connection.close()


def create_schema(path: Path, schema_sql: str) -> None:
    """Create the folder of `path`, switch the file to WAL mode and run `schema_sql` in one transaction."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WebDatabaseError(
            f"cannot create the folder {path.parent} for the web database: {error.strerror}; "
            "set data_dir in the web config to a writable folder"
        ) from None
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as error:
        raise _database_error(path, error) from error
    try:
        # WAL mode is stored in the file, so it is set only once.
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(f"BEGIN IMMEDIATE;\n{schema_sql}\nCOMMIT;")
    except sqlite3.Error as error:
        if connection.in_transaction:
            connection.rollback()
        raise _database_error(path, error) from error
    finally:
        connection.close()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def append_event(
    connection: sqlite3.Connection, user: str | None, action: str, client_address: str | None, detail: dict
) -> None:
    """Insert one audit row inside the caller's transaction. Raise ValueError for an unknown action or a secret."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; add it to ACTIONS in {__name__} first")
    if not isinstance(detail, dict):
        raise ValueError(f"audit detail for {action!r} is {type(detail).__name__}; pass a dict")
    secret_keys = [key for key in detail if any(word in str(key).lower() for word in SECRET_KEY_WORDS)]
    if secret_keys:
        raise ValueError(f"audit detail for {action!r} has the keys {secret_keys}, which look like secrets; "
                         "leave passwords and tokens out of the audit log")
    connection.execute(
        "INSERT INTO audit_events (at, user, action, client_address, detail) VALUES (?, ?, ?, ?, ?)",
        (utc_now(), user, action, client_address, json.dumps(detail, ensure_ascii=False, default=str)),
    )


@dataclass(frozen=True)
class AuditRecord:
    """One audit row: when (UTC ISO 8601), who, what, and from where.

    `user` is the logged-in user. For a failed login it is the name as typed, and for other requests
    without a login it is None.
    """

    id: int
    at: str
    user: str | None
    action: str
    client_address: str | None
    detail: dict


@dataclass(frozen=True)
class AuditPage:
    """One page of audit rows, newest first; `page` counts from 1."""

    records: list[AuditRecord]
    page: int
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


class AuditLog:
    """The audit_events table of the web database at `path`, created when missing."""

    def __init__(self, path: Path):
        self.path = Path(path)
        create_schema(self.path, _AUDIT_SCHEMA)

    def record(self, user: str | None, action: str, client_address: str | None, detail: dict) -> None:
        with transaction(self.path, write=True) as connection:
            append_event(connection, user, action, client_address, detail)
        log.debug("audit %s by %s from %s", action, user, client_address)

    def query(self, page: int = 1, page_size: int = 50, user: str | None = None,
              action: str | None = None) -> AuditPage:
        """Return page `page` of the rows matching `user` and `action` (None matches any), newest first.

        `user` matches every user name that contains it, ignoring the case of ASCII letters, so "INV"
        finds inv1 and inv2. It also matches failed logins that tried such a name, which have no
        logged-in user. `action` matches exactly.

        A page after the last returns an empty record list with the true total, so a pager can
        link back.
        """
        for name, value, maximum in (("page", page, None), ("page_size", page_size, MAX_PAGE_SIZE)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid audit {name} {value!r}: use a whole number of 1 or more")
            if maximum is not None and value > maximum:
                raise ValueError(f"audit page_size {value} is above the maximum {maximum}; ask for smaller pages")

        conditions, parameters = [], []
        if user:
            # instr, unlike LIKE, reads % and _ in the filter as themselves. SQLite's lower() folds only ASCII.
            conditions.append("(instr(lower(user), lower(?)) > 0 OR (user IS NULL AND action = 'login_failed' "
                              "AND instr(lower(json_extract(detail, '$.name')), lower(?)) > 0))")
            parameters += [user, user]
        if action:
            conditions.append("action = ?")
            parameters.append(action)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""

        with transaction(self.path, write=False) as connection:
            total = connection.execute(f"SELECT COUNT(*) FROM audit_events {where}", parameters).fetchone()[0]
            rows = connection.execute(
                f"SELECT id, at, user, action, client_address, detail FROM audit_events {where} "
                "ORDER BY id DESC LIMIT ? OFFSET ?",
                [*parameters, page_size, (page - 1) * page_size],
            ).fetchall()
        records = [
            AuditRecord(row["id"], row["at"], row["user"], row["action"], row["client_address"], json.loads(row["detail"]))
            for row in rows
        ]
        return AuditPage(records, page, page_size, total)


AUDIT_LOG_KEY = web.AppKey("audit_log", AuditLog)


def audit_request(request: web.Request, action: str, **detail: object) -> None:
    """Record `action` with the request's logged-in user and client address.

    NOTE: the client address is the TCP peer, which is the reverse proxy's address when the
    service runs behind one.
    """
    # Imported here because edge.web.auth builds on this module.
    from edge.web.auth import USER_KEY

    user = request.get(USER_KEY)
    request.app[AUDIT_LOG_KEY].record(user.name if user is not None else None, action, request.remote, detail)
