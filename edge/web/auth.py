"""Users, roles, password hashing, server-side sessions and the login rate limiter of the web service.

Users and sessions live in the web database beside the audit log (see edge.web.audit), so every
change to a user commits together with its audit row and with the removal of its sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from edge.web.audit import AuditLog, append_event, create_schema, transaction, utc_now

log = logging.getLogger(__name__)

ROLES = ("viewer", "investigator", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}

MAX_NAME_CHARS = 32
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,%d}$" % (MAX_NAME_CHARS - 1))
MIN_PASSWORD_LENGTH = 10
# scrypt accepts any length, so this cap bounds the work of one login request.
MAX_PASSWORD_LENGTH = 1024

_AUTH_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'investigator', 'admin')),
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
-- Only a SHA-256 of each session token is stored, so a copy of the file does not give working sessions.
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    csrf_token TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE INDEX IF NOT EXISTS sessions_last_seen ON sessions (last_seen);
-- Sessions that a password change or a disabled account ended, kept until they would have expired
-- anyway, so that the login page can tell the user why they were logged out.
CREATE TABLE IF NOT EXISTS ended_sessions (
    token_sha256 TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    last_seen REAL NOT NULL
);
"""

# Reason codes for a session cookie without a live session. The login page shows the matching notice.
END_EXPIRED = "expired"
END_DISABLED = "disabled"
END_PASSWORD_CHANGED = "password_changed"
END_REASONS = (END_EXPIRED, END_DISABLED, END_PASSWORD_CHANGED)


class UserError(Exception):
    """A user change or lookup was rejected.

    `key` and `fields` select the catalogue text that a page shows in the user's language. The
    exception's own message is in English, for logs and the command line.
    """

    def __init__(self, message: str, key: str, **fields: object):
        super().__init__(message)
        self.key = key
        self.fields = fields


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    disabled: bool

    def can(self, role: str) -> bool:
        """Return True when this user's role ranks at or above `role`. A disabled user gets False for every role."""
        if role not in ROLE_RANK:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        return not self.disabled and ROLE_RANK[self.role] >= ROLE_RANK[role]


# --- Password hashing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost: memory is 128 * n * r * p bytes, and time grows linearly with n and p."""

    n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        if not (2**10 <= self.n <= 2**20) or self.n & (self.n - 1):
            raise ValueError(f"invalid scrypt n {self.n}: use a power of two from 2**10 to 2**20")
        if not 1 <= self.r <= 32:
            raise ValueError(f"invalid scrypt r {self.r}: use 1 to 32")
        if not 1 <= self.p <= 16:
            raise ValueError(f"invalid scrypt p {self.p}: use 1 to 16")

    @property
    def memory_bytes(self) -> int:
        return 128 * self.n * self.r * self.p


# n=2**15, r=8, p=1 uses 32 MiB per hash. One hash took 0.13 s on a 2-core x86 VM (Python 3.11,
# hashlib on the system OpenSSL, other jobs running), and 2**16 took 0.26 s. Logins hash on at most two
# threads, so a burst of logins uses at most 64 MiB. To raise the cost, raise n: old hashes keep their
# own parameters and are re-hashed with the new ones at the user's next successful login.
DEFAULT_SCRYPT = ScryptParams(n=2**15, r=8, p=1)
SALT_BYTES = 16
HASH_BYTES = 32


def _scrypt(password: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=params.n, r=params.r, p=params.p,
        maxmem=2 * params.memory_bytes, dklen=HASH_BYTES,
    )


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, params: ScryptParams = DEFAULT_SCRYPT) -> str:
    """Return 'scrypt$n$r$p$salt$hash' with a random salt, salt and hash in base64."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, params)
    return f"scrypt${params.n}${params.r}${params.p}${_b64encode(salt)}${_b64encode(digest)}"


def _parse_hash(encoded: str) -> tuple[ScryptParams, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("expected 6 fields 'scrypt$n$r$p$salt$hash'")
    params = ScryptParams(int(parts[1]), int(parts[2]), int(parts[3]))
    return params, base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)


def verify_password(password: str, encoded: str) -> bool:
    """Return True when `password` matches the stored hash. A malformed hash logs an error and returns False."""
    try:
        params, salt, expected = _parse_hash(encoded)
    except ValueError as error:
        log.error("stored password hash is malformed (%s); reset the password with `edge web adduser` or "
                  "the users page", error)
        return False
    return hmac.compare_digest(_scrypt(password, salt, params), expected)


def needs_rehash(encoded: str, params: ScryptParams) -> bool:
    try:
        stored, _, _ = _parse_hash(encoded)
    except ValueError:
        return True
    return stored != params


# --- Validation ---------------------------------------------------------------------------------------


def validate_name(name: object) -> str:
    """Return the user name in lower case, or raise UserError. Names are case-insensitive."""
    if not isinstance(name, str):
        raise UserError(f"invalid user name {name!r}: expected text", "users.error.name_invalid")
    normalised = name.strip().lower()
    if not NAME_PATTERN.fullmatch(normalised):
        raise UserError(
            f"invalid user name {name[:40]!r}: use 2 to 32 characters from a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit",
            "users.error.name_invalid",
        )
    return normalised


def validate_role(role: object) -> str:
    if role not in ROLE_RANK:
        raise UserError(f"unknown role {role!r}; use one of {', '.join(ROLES)}", "users.error.role_invalid")
    return role


def validate_password(password: object, name: str) -> str:
    """Return `password` unchanged, or raise UserError saying which rule it breaks."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(
            f"the password for {name!r} is too short: use at least {MIN_PASSWORD_LENGTH} characters",
            "users.error.password_short", minimum=MIN_PASSWORD_LENGTH,
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(
            f"the password for {name!r} is too long: use at most {MAX_PASSWORD_LENGTH} characters",
            "users.error.password_long", maximum=MAX_PASSWORD_LENGTH,
        )
    if password.strip().lower() == name:
        raise UserError(f"the password for {name!r} equals the user name; choose another",
                        "users.error.password_is_name")
    return password


def create_auth_schema(path: Path) -> None:
    create_schema(path, _AUTH_SCHEMA)


# --- Users ----------------------------------------------------------------------------------------------


def _user_from_row(row: sqlite3.Row) -> User:
    return User(id=row["id"], name=row["name"], role=row["role"], disabled=bool(row["disabled"]))


class UserStore:
    """The users of the web database at `path`. Every change writes an audit row in its transaction.

    Hashing takes about a tenth of a second (see DEFAULT_SCRYPT), so async callers should run
    add_user, authenticate and set_password in a thread pool.
    """

    def __init__(self, path: Path, scrypt_params: ScryptParams = DEFAULT_SCRYPT):
        self.path = Path(path)
        self.scrypt_params = scrypt_params
        # Checked against when the user name is unknown, so an unknown name costs one hash like a known one.
        self._dummy_hash = hash_password(secrets.token_urlsafe(16), scrypt_params)
        AuditLog(self.path)
        create_auth_schema(self.path)

    def _select(self, connection: sqlite3.Connection, user_id: int) -> sqlite3.Row:
        row = connection.execute(
            "SELECT id, name, role, disabled, password_hash FROM users WHERE id = ?", (user_id,)
        ).fetchone()
        if row is None:
            raise UserError(f"user id {user_id} not found; list the users to find the right id",
                            "users.error.not_found", user_id=user_id)
        return row

    @staticmethod
    def _reject_last_admin(connection: sqlite3.Connection, row: sqlite3.Row) -> None:
        """Raise UserError when `row` is the only enabled admin, before a change that would remove it."""
        if row["role"] != "admin" or row["disabled"]:
            return
        admins = connection.execute("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0").fetchone()[0]
        if admins == 1:
            raise UserError(f"user {row['name']!r} is the last enabled admin; make another user admin first",
                            "users.error.last_admin", name=row["name"])

    def add_user(self, name: str, password: str, role: str, actor: str,
                 client_address: str | None = None) -> User:
        """Insert a user and its user_add audit row. Raise UserError for an invalid value or a taken name."""
        name = validate_name(name)
        role = validate_role(role)
        password = validate_password(password, name)
        password_hash = hash_password(password, self.scrypt_params)
        with transaction(self.path, write=True) as connection:
            if connection.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"user name {name!r} is taken; choose another or change that user's role",
                                "users.error.name_taken", name=name)
            cursor = connection.execute(
                "INSERT INTO users (name, role, password_hash, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                (name, role, password_hash, utc_now(), actor),
            )
            user = User(cursor.lastrowid, name, role, False)
            append_event(connection, actor, "user_add", client_address,
                         {"user_id": user.id, "name": name, "role": role})
        log.info("user %s (%s) added by %s", name, role, actor)
        return user

    def authenticate(self, name: str, password: str) -> User | None:
        """Return the enabled user whose name and password match, else None.

        Every call verifies one hash, also for invalid and unknown names and disabled users, so
        the response time does not show which names exist. A hash with older scrypt parameters
        is replaced after a successful check.
        """
        try:
            name = validate_name(name)
        except UserError:
            name = ""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            password = ""
        with transaction(self.path, write=False) as connection:
            row = connection.execute(
                "SELECT id, name, role, disabled, password_hash FROM users WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            verify_password(password, self._dummy_hash)
            return None
        if not verify_password(password, row["password_hash"]) or row["disabled"]:
            return None
        if needs_rehash(row["password_hash"], self.scrypt_params):
            self._rehash(row["id"], row["password_hash"], password)
        return _user_from_row(row)

    def _rehash(self, user_id: int, old_hash: str, password: str) -> None:
        new_hash = hash_password(password, self.scrypt_params)
        with transaction(self.path, write=True) as connection:
            # The WHERE on the old hash skips the update when the password changed meanwhile.
            connection.execute("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                               (new_hash, user_id, old_hash))
        log.info("password hash of user id %s re-hashed with scrypt n=%s r=%s p=%s", user_id,
                 self.scrypt_params.n, self.scrypt_params.r, self.scrypt_params.p)

    def get_user(self, user_id: int) -> User | None:
        with transaction(self.path, write=False) as connection:
            row = connection.execute("SELECT id, name, role, disabled FROM users WHERE id = ?", (user_id,)).fetchone()
        return _user_from_row(row) if row else None

    def list_users(self) -> list[User]:
        """Return every user, by name."""
        with transaction(self.path, write=False) as connection:
            rows = connection.execute("SELECT id, name, role, disabled FROM users ORDER BY name").fetchall()
        return [_user_from_row(row) for row in rows]

    def set_role(self, user_id: int, role: str, actor: str, client_address: str | None = None) -> User:
        """Change a user's role. Raise UserError when it would leave no enabled admin."""
        role = validate_role(role)
        with transaction(self.path, write=True) as connection:
            row = self._select(connection, user_id)
            name, old_role = row["name"], row["role"]
            if role != "admin":
                self._reject_last_admin(connection, row)
            connection.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
            append_event(connection, actor, "user_role", client_address,
                         {"user_id": user_id, "name": name, "old_role": old_role, "role": role})
        log.info("user %s role changed from %s to %s by %s", name, old_role, role, actor)
        return User(user_id, name, role, bool(row["disabled"]))

    def set_password(self, user_id: int, password: str, actor: str, client_address: str | None = None) -> None:
        """Replace a user's password and end all of their sessions."""
        user = self.get_user(user_id)
        if user is None:
            raise UserError(f"user id {user_id} not found; list the users to find the right id",
                            "users.error.not_found", user_id=user_id)
        password = validate_password(password, user.name)
        password_hash = hash_password(password, self.scrypt_params)
        with transaction(self.path, write=True) as connection:
            row = self._select(connection, user_id)
            connection.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
            ended = _end_user_sessions(connection, user_id, END_PASSWORD_CHANGED)
            append_event(connection, actor, "user_password", client_address,
                         {"user_id": user_id, "name": row["name"], "sessions_ended": ended})
        log.info("password of user %s changed by %s; %d sessions ended", row["name"], actor, ended)

    def set_disabled(self, user_id: int, disabled: bool, actor: str, client_address: str | None = None) -> User:
        """Disable a user and end their sessions, or enable them again. Raise UserError for the last admin."""
        with transaction(self.path, write=True) as connection:
            row = self._select(connection, user_id)
            name = row["name"]
            if disabled:
                self._reject_last_admin(connection, row)
            connection.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))
            ended = 0
            if disabled:
                ended = _end_user_sessions(connection, user_id, END_DISABLED)
            append_event(connection, actor, "user_disable", client_address,
                         {"user_id": user_id, "name": name, "disabled": disabled, "sessions_ended": ended})
        log.info("user %s %s by %s; %d sessions ended", name, "disabled" if disabled else "enabled", actor, ended)
        return User(user_id, name, row["role"], disabled)


# --- Sessions -------------------------------------------------------------------------------------------


def _end_user_sessions(connection: sqlite3.Connection, user_id: int, reason: str) -> int:
    """Delete every session of a user, remembering `reason` for each; return how many ended."""
    connection.execute(
        "INSERT OR REPLACE INTO ended_sessions (token_sha256, reason, last_seen) "
        "SELECT token_sha256, ?, last_seen FROM sessions WHERE user_id = ?", (reason, user_id))
    return connection.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount


@dataclass(frozen=True)
class Session:
    """A logged-in session. `id` is the SHA-256 of the cookie token, never the token itself."""

    id: str
    user: User
    csrf_token: str
    last_seen: float


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionStore:
    """Server-side sessions in the web database, ended after `ttl_s` seconds without a request.

    `clock` returns epoch seconds; tests pass a fake one.
    """

    MAX_SESSIONS_PER_USER = 10

    def __init__(self, path: Path, ttl_s: float, clock: Callable[[], float] = time.time):
        if ttl_s <= 0:
            raise ValueError(f"invalid session ttl_s {ttl_s!r}: use a positive number of seconds")
        self.path = Path(path)
        self.ttl_s = ttl_s
        self.clock = clock
        # last_seen is written at most once per interval, so most requests only read the database. A
        # session can therefore expire up to this interval (60 s at most) before ttl_s after its last request.
        self.refresh_interval_s = min(60.0, ttl_s / 10)
        create_auth_schema(self.path)

    def create(self, user: User) -> tuple[str, Session]:
        """Start a session for `user`; return the cookie token and the session.

        Expired rows are purged here, and the user's oldest sessions beyond
        MAX_SESSIONS_PER_USER are ended, so the table stays bounded.
        """
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(_token_sha256(token), user, secrets.token_urlsafe(32), now)
        with transaction(self.path, write=True) as connection:
            purged = connection.execute("DELETE FROM sessions WHERE last_seen <= ?", (now - self.ttl_s,)).rowcount
            connection.execute("DELETE FROM ended_sessions WHERE last_seen <= ?", (now - self.ttl_s,))
            connection.execute(
                "INSERT INTO sessions (token_sha256, user_id, csrf_token, created_at, last_seen) VALUES (?, ?, ?, ?, ?)",
                (session.id, user.id, session.csrf_token, now, now),
            )
            connection.execute(
                "DELETE FROM sessions WHERE user_id = ? AND token_sha256 NOT IN "
                "(SELECT token_sha256 FROM sessions WHERE user_id = ? ORDER BY last_seen DESC LIMIT ?)",
                (user.id, user.id, self.MAX_SESSIONS_PER_USER),
            )
        if purged:
            log.debug("%d expired sessions purged", purged)
        return token, session

    def lookup(self, token: str, refresh: bool = True) -> Session | None:
        """Return the live session of an enabled user for `token`, else None.

        With `refresh`, the request counts as activity and restarts the session's idle timer. Requests
        that a page makes by itself, such as image fetches, pass False.
        """
        row = self._live_row(token)
        if row is None:
            return None
        token_sha256, now, last_seen = _token_sha256(token), self.clock(), row["last_seen"]
        if refresh and now - last_seen >= self.refresh_interval_s:
            last_seen = now
            with transaction(self.path, write=True) as connection:
                connection.execute("UPDATE sessions SET last_seen = ? WHERE token_sha256 = ?", (now, token_sha256))
        return Session(token_sha256, _user_from_row(row), row["csrf_token"], last_seen)

    def is_live(self, token: str) -> bool:
        """Return whether `token` still has a live session, without refreshing its idle timer.

        An open live page checks this, so leaving the page open does not keep an idle login alive.
        """
        return self._live_row(token) is not None

    def end_reason(self, token: str) -> str:
        """Return why `token` has no live session: one of END_REASONS.

        A token that a password change or a disabled account ended gives that reason until it would
        have expired. Any other token, also one that never existed, gives END_EXPIRED.
        """
        if not token or len(token) > 200:
            return END_EXPIRED
        with transaction(self.path, write=False) as connection:
            row = connection.execute("SELECT reason, last_seen FROM ended_sessions WHERE token_sha256 = ?",
                                     (_token_sha256(token),)).fetchone()
        if row is None or row["last_seen"] + self.ttl_s <= self.clock() or row["reason"] not in END_REASONS:
            return END_EXPIRED
        return row["reason"]

    def _live_row(self, token: str) -> sqlite3.Row | None:
        """Return the session and user row for `token`; delete an expired session or one of a disabled user."""
        if not token or len(token) > 200:
            return None
        with transaction(self.path, write=False) as connection:
            row = connection.execute(
                "SELECT users.id, users.name, users.role, users.disabled, sessions.csrf_token, sessions.last_seen "
                "FROM sessions JOIN users ON users.id = sessions.user_id WHERE sessions.token_sha256 = ?",
                (_token_sha256(token),),
            ).fetchone()
        if row is None:
            return None
        if row["disabled"]:
            with transaction(self.path, write=True) as connection:
                _end_user_sessions(connection, row["id"], END_DISABLED)
            return None
        if row["last_seen"] + self.ttl_s <= self.clock():
            self.delete(token)
            return None
        return row

    def delete(self, token: str) -> None:
        with transaction(self.path, write=True) as connection:
            connection.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_token_sha256(token),))

    def delete_user_sessions(self, user_id: int) -> int:
        """End every session of a user and return how many ended."""
        with transaction(self.path, write=True) as connection:
            return connection.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount

    def count(self) -> int:
        with transaction(self.path, write=False) as connection:
            return connection.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]


# --- Login rate limiting ----------------------------------------------------------------------------------


class _FailureWindow:
    """Failure times per key in a sliding window, for at most `max_keys` keys (least recently failed go first)."""

    def __init__(self, limit: int, window_s: float, max_keys: int):
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after_s(self, key: str, now: float) -> float:
        times = self.failures.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self.failures[key]
            return 0.0
        if len(times) < self.limit:
            return 0.0
        return times[0] + self.window_s - now

    def add(self, key: str, now: float) -> None:
        times = self.failures.get(key)
        if times is None:
            times = self.failures[key] = deque(maxlen=self.limit)
        times.append(now)
        self.failures.move_to_end(key)
        while len(self.failures) > self.max_keys:
            self.failures.popitem(last=False)


class LoginRateLimiter:
    """Counts failed logins per client address and per user name over a sliding window.

    A name allows fewer failures than an address, because one address may be a NAT shared by a
    whole office. Memory is bounded by `max_keys` per kind. When more keys fail than that, the
    least recently failed keys are forgotten first.
    NOTE: behind a reverse proxy every request has the proxy's address, so the address limit
    then applies to all clients together.
    """

    def __init__(self, max_failures_per_name: int = 5, max_failures_per_address: int = 20,
                 window_s: float = 300.0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._by_name = _FailureWindow(max_failures_per_name, window_s, max_keys)
        self._by_address = _FailureWindow(max_failures_per_address, window_s, max_keys)

    @staticmethod
    def _name_key(name: str) -> str:
        return name.strip().lower()[:64]

    def retry_after_s(self, client_address: str | None, name: str) -> float:
        """Return the seconds to wait before the next attempt may be checked; 0 when it may be checked now."""
        now = self.clock()
        return max(self._by_address.retry_after_s(client_address or "", now),
                   self._by_name.retry_after_s(self._name_key(name), now))

    def record_failure(self, client_address: str | None, name: str) -> None:
        now = self.clock()
        self._by_address.add(client_address or "", now)
        self._by_name.add(self._name_key(name), now)

    def clear_name(self, name: str) -> None:
        """Forget a name's failures after its correct password was given."""
        self._by_name.failures.pop(self._name_key(name), None)


# Set by the session middleware on every request; None when the request has no live session.
USER_KEY: web.RequestKey[User | None] = web.RequestKey("user", User)
SESSION_KEY: web.RequestKey[Session | None] = web.RequestKey("session", Session)
