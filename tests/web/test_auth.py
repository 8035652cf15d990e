"""Users, password hashing, sessions, the login rate limiter, the login pages and `edge web adduser`."""

from __future__ import annotations

import sqlite3

import pytest

import edge.web.auth as auth
from edge.web.audit import AUDIT_LOG_KEY, AuditLog, database_path
from edge.web.auth import (
    DEFAULT_SCRYPT,
    LoginRateLimiter,
    ScryptParams,
    SessionStore,
    User,
    UserError,
    UserStore,
    hash_password,
    needs_rehash,
    validate_name,
    validate_password,
    verify_password,
)
from edge.web.cli_users import add_user_command
from edge.web.security import SESSION_COOKIE, SESSION_STORE_KEY, USER_STORE_KEY
from tests.web.auth_support import FAST_SCRYPT, PASSWORDS, FakeClock, build_app, log_in, page_csrf_token


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path):
    return database_path(tmp_path)


@pytest.fixture
def users(db_path) -> UserStore:
    return UserStore(db_path, FAST_SCRYPT)


def audit_actions(path) -> list[tuple]:
    return [(record.user, record.action, record.detail) for record in AuditLog(path).query(page_size=200).records]


# --- Hashing ---------------------------------------------------------------------------------------


def test_hash_round_trip_with_default_cost():
    encoded = hash_password("correct horse battery", DEFAULT_SCRYPT)
    assert encoded.startswith("scrypt$32768$8$1$")
    assert verify_password("correct horse battery", encoded)
    assert not verify_password("correct horse batterz", encoded)


def test_hash_salts_differ():
    first = hash_password("same password 1", FAST_SCRYPT)
    second = hash_password("same password 1", FAST_SCRYPT)
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]


@pytest.mark.parametrize("encoded", ["", "bcrypt$x", "scrypt$1024$8$1$!!!$AAAA", "scrypt$1000$8$1$AAAA$AAAA",
                                     "scrypt$1024$8$1$AAAA"])
def test_verify_malformed_hash(encoded):
    assert verify_password("any password 1", encoded) is False


def test_needs_rehash():
    encoded = hash_password("some password 1", FAST_SCRYPT)
    assert not needs_rehash(encoded, FAST_SCRYPT)
    assert needs_rehash(encoded, ScryptParams(n=2**11, r=8, p=1))


@pytest.mark.parametrize("n, r, p", [(1000, 8, 1), (2**9, 8, 1), (2**21, 8, 1), (2**10, 0, 1), (2**10, 8, 17)])
def test_scrypt_params_bounds(n, r, p):
    with pytest.raises(ValueError, match="invalid scrypt"):
        ScryptParams(n, r, p)


def test_raised_cost_rehashes_at_login(db_path):
    UserStore(db_path, FAST_SCRYPT).add_user("alice", "alice-password-1", "viewer", "test")
    stronger = ScryptParams(n=2**11, r=8, p=1)
    store = UserStore(db_path, stronger)
    assert store.authenticate("alice", "alice-password-1") is not None
    with sqlite3.connect(db_path) as connection:
        stored = connection.execute("SELECT password_hash FROM users WHERE name = 'alice'").fetchone()[0]
    assert stored.startswith("scrypt$2048$8$1$")
    assert store.authenticate("alice", "alice-password-1") is not None


# --- Validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("alice", "alice"),
    (" Alice.W ", "alice.w"),
    ("zhang_san-2", "zhang_san-2"),
    ("a1", "a1"),
])
def test_valid_names(name, expected):
    assert validate_name(name) == expected


@pytest.mark.parametrize("name", ["", "a", "-alice", "张三", "alice smith", "a" * 33, "ali\nce", None, "al/ice"])
def test_invalid_names(name):
    with pytest.raises(UserError, match="invalid user name") as raised:
        validate_name(name)
    assert raised.value.key == "users.error.name_invalid"


@pytest.mark.parametrize("password, key", [
    ("short", "users.error.password_short"),
    ("123456789", "users.error.password_short"),
    ("x" * 1025, "users.error.password_long"),
    ("  Alice.Wang ", "users.error.password_is_name"),
])
def test_password_policy(password, key):
    with pytest.raises(UserError) as raised:
        validate_password(password, "alice.wang")
    assert raised.value.key == key


def test_password_policy_message_names_minimum():
    with pytest.raises(UserError, match="at least 10 characters"):
        validate_password("too-short", "alice")


# --- Users -------------------------------------------------------------------------------------------


def test_authenticate(users):
    added = users.add_user("Alice", "alice-password-1", "investigator", "test")
    assert added == User(added.id, "alice", "investigator", False)
    assert users.authenticate("alice", "alice-password-1") == added
    assert users.authenticate("ALICE", "alice-password-1") == added
    assert users.authenticate("alice", "alice-password-2") is None
    assert users.authenticate("bob", "alice-password-1") is None
    assert users.authenticate("", "") is None


def test_authenticate_disabled_user(users):
    added = users.add_user("alice", "alice-password-1", "viewer", "test")
    users.set_disabled(added.id, True, "test")
    assert users.authenticate("alice", "alice-password-1") is None


@pytest.mark.parametrize("name, password", [
    ("alice", "wrong-password-1"),
    ("nobody", "wrong-password-1"),
    ("not a valid name!", "wrong-password-1"),
    ("disabled", "disabled-password-1"),
    ("alice", "x" * 5000),
])
def test_authenticate_hashes_once_for_every_failure(users, monkeypatch, name, password):
    """Unknown, invalid and disabled names cost one hash like a wrong password, so timing hides which names exist."""
    users.add_user("alice", "alice-password-1", "viewer", "test")
    disabled = users.add_user("disabled", "disabled-password-1", "viewer", "test")
    users.set_disabled(disabled.id, True, "test")
    calls = []
    real_scrypt = auth._scrypt

    def counting_scrypt(*args):
        calls.append(args[2])
        return real_scrypt(*args)

    monkeypatch.setattr(auth, "_scrypt", counting_scrypt)
    assert users.authenticate(name, password) is None
    assert calls == [FAST_SCRYPT]


def test_add_user_rejects_taken_name(users):
    users.add_user("alice", "alice-password-1", "viewer", "test")
    with pytest.raises(UserError, match="'alice' is taken") as raised:
        users.add_user("Alice", "alice-password-2", "admin", "test")
    assert raised.value.fields == {"name": "alice"}


def test_add_user_rejects_unknown_role(users):
    with pytest.raises(UserError, match="unknown role 'root'"):
        users.add_user("alice", "alice-password-1", "root", "test")


@pytest.mark.parametrize("user_role, required, allowed", [
    ("viewer", "viewer", True),
    ("viewer", "investigator", False),
    ("viewer", "admin", False),
    ("investigator", "viewer", True),
    ("investigator", "investigator", True),
    ("investigator", "admin", False),
    ("admin", "viewer", True),
    ("admin", "investigator", True),
    ("admin", "admin", True),
])
def test_user_can(user_role, required, allowed):
    assert User(1, "u1", user_role, False).can(required) is allowed
    assert User(1, "u1", user_role, True).can(required) is False


def test_user_can_unknown_role():
    with pytest.raises(ValueError, match="unknown role"):
        User(1, "u1", "admin", False).can("root")


def test_last_admin_cannot_be_demoted_or_disabled(users):
    admin = users.add_user("root1", "root-password-1", "admin", "test")
    with pytest.raises(UserError, match="last enabled admin") as raised:
        users.set_role(admin.id, "viewer", "root1")
    assert raised.value.key == "users.error.last_admin"
    with pytest.raises(UserError, match="last enabled admin"):
        users.set_disabled(admin.id, True, "root1")

    second = users.add_user("root2", "root-password-2", "admin", "test")
    assert users.set_role(admin.id, "viewer", "root2").role == "viewer"
    with pytest.raises(UserError, match="last enabled admin"):
        users.set_disabled(second.id, True, "root2")


def test_unknown_user_id(users):
    with pytest.raises(UserError, match="user id 42 not found"):
        users.set_role(42, "viewer", "test")
    with pytest.raises(UserError, match="user id 42 not found"):
        users.set_password(42, "new-password-1", "test")


def test_user_changes_are_audited(users, db_path):
    alice = users.add_user("alice", "alice-password-1", "viewer", "root", client_address="10.0.0.5")
    users.set_role(alice.id, "investigator", "root")
    users.set_password(alice.id, "alice-password-2", "root")
    users.set_disabled(alice.id, True, "root")
    rows = audit_actions(db_path)
    assert [row[1] for row in rows] == ["user_disable", "user_password", "user_role", "user_add"]
    assert all(row[0] == "root" for row in rows)
    assert rows[2][2] == {"user_id": alice.id, "name": "alice", "old_role": "viewer", "role": "investigator"}
    assert AuditLog(db_path).query().records[-1].client_address == "10.0.0.5"


def test_password_never_stored_in_clear(users, db_path):
    users.add_user("alice", "alice-password-1", "viewer", "test")
    assert b"alice-password-1" not in db_path.read_bytes()
    wal = db_path.with_name(db_path.name + "-wal")
    if wal.exists():
        assert b"alice-password-1" not in wal.read_bytes()


# --- Sessions ------------------------------------------------------------------------------------------


@pytest.fixture
def sessions(db_path, clock) -> SessionStore:
    return SessionStore(db_path, ttl_s=600, clock=clock)


def test_session_lookup(users, sessions, db_path):
    alice = users.add_user("alice", "alice-password-1", "viewer", "test")
    token, session = sessions.create(alice)
    found = sessions.lookup(token)
    assert found.user == alice
    assert found.csrf_token == session.csrf_token
    assert len(session.csrf_token) >= 32
    assert sessions.lookup(token + "x") is None
    assert sessions.lookup("") is None
    with sqlite3.connect(db_path) as connection:
        stored = connection.execute("SELECT token_sha256 FROM sessions").fetchall()
    assert stored == [(session.id,)]
    assert token not in session.id


def test_session_idle_expiry_and_refresh(users, sessions, clock):
    alice = users.add_user("alice", "alice-password-1", "viewer", "test")
    token, _ = sessions.create(alice)
    clock.advance(500)
    assert sessions.lookup(token) is not None
    # The lookup at 500 s restarted the idle timer, so the session lives until 1100 s.
    clock.advance(500)
    assert sessions.lookup(token) is not None
    clock.advance(600)
    assert sessions.lookup(token) is None
    clock.advance(-600)
    assert sessions.lookup(token) is None, "an expired session must be deleted, not only hidden"


def test_session_sees_role_change(users, sessions):
    alice = users.add_user("alice", "alice-password-1", "viewer", "test")
    token, _ = sessions.create(alice)
    users.set_role(alice.id, "admin", "test")
    assert sessions.lookup(token).user.role == "admin"


@pytest.mark.parametrize("change", ["disable", "password"])
def test_user_change_ends_sessions(users, sessions, change):
    alice = users.add_user("alice", "alice-password-1", "viewer", "test")
    bob = users.add_user("bob", "bob-password-1", "viewer", "test")
    tokens = [sessions.create(alice)[0] for _ in range(3)]
    bob_token, _ = sessions.create(bob)
    if change == "disable":
        users.set_disabled(alice.id, True, "test")
    else:
        users.set_password(alice.id, "alice-password-2", "test")
    assert [sessions.lookup(token) for token in tokens] == [None, None, None]
    assert sessions.lookup(bob_token) is not None


def test_sessions_bounded(users, sessions, clock):
    alice = users.add_user("alice", "alice-password-1", "viewer", "test")
    bob = users.add_user("bob", "bob-password-1", "viewer", "test")
    sessions.create(bob)
    clock.advance(700)
    tokens = []
    for _ in range(SessionStore.MAX_SESSIONS_PER_USER + 5):
        clock.advance(1)
        tokens.append(sessions.create(alice)[0])
    # Bob's expired session was purged, and only Alice's newest sessions remain.
    assert sessions.count() == SessionStore.MAX_SESSIONS_PER_USER
    assert sessions.lookup(tokens[0]) is None
    assert sessions.lookup(tokens[-1]) is not None


# --- Rate limiter --------------------------------------------------------------------------------------


def test_rate_limiter_per_name(clock):
    limiter = LoginRateLimiter(max_failures_per_name=3, max_failures_per_address=100, window_s=60, clock=clock)
    for index in range(3):
        assert limiter.retry_after_s(f"10.0.0.{index}", "alice") == 0
        limiter.record_failure(f"10.0.0.{index}", "Alice")
        clock.advance(10)
    assert limiter.retry_after_s("10.0.0.9", "ALICE") == pytest.approx(30)
    assert limiter.retry_after_s("10.0.0.9", "bob") == 0
    clock.advance(30)
    assert limiter.retry_after_s("10.0.0.9", "alice") == 0


def test_rate_limiter_per_address(clock):
    limiter = LoginRateLimiter(max_failures_per_name=100, max_failures_per_address=3, window_s=60, clock=clock)
    for index in range(3):
        limiter.record_failure("10.0.0.1", f"user{index}")
    assert limiter.retry_after_s("10.0.0.1", "someone") == pytest.approx(60)
    assert limiter.retry_after_s("10.0.0.2", "someone") == 0


def test_rate_limiter_window_slides(clock):
    limiter = LoginRateLimiter(max_failures_per_name=2, window_s=60, clock=clock)
    limiter.record_failure("10.0.0.1", "alice")
    clock.advance(50)
    limiter.record_failure("10.0.0.1", "alice")
    assert limiter.retry_after_s("10.0.0.1", "alice") == pytest.approx(10)
    clock.advance(10)
    # The first failure left the window, the second still counts.
    assert limiter.retry_after_s("10.0.0.1", "alice") == 0
    limiter.record_failure("10.0.0.1", "alice")
    assert limiter.retry_after_s("10.0.0.1", "alice") == pytest.approx(50)


def test_rate_limiter_clear_name(clock):
    limiter = LoginRateLimiter(max_failures_per_name=1, clock=clock)
    limiter.record_failure("10.0.0.1", "alice")
    assert limiter.retry_after_s("10.0.0.1", "alice") > 0
    limiter.clear_name("alice")
    assert limiter.retry_after_s("10.0.0.1", "alice") == 0


def test_rate_limiter_memory_bounded(clock):
    limiter = LoginRateLimiter(max_keys=50, clock=clock)
    for index in range(1000):
        limiter.record_failure(f"10.0.{index // 256}.{index % 256}", f"user{index}")
    assert len(limiter._by_name.failures) == 50
    assert len(limiter._by_address.failures) == 50


# --- Login pages -------------------------------------------------------------------------------------


@pytest.fixture
async def client(aiohttp_client, tmp_path, clock):
    return await aiohttp_client(build_app(tmp_path, clock))


async def test_login_success(client):
    response = await log_in(client, "viewer", next_path="/search")
    assert response.status == 303
    assert response.headers["Location"] == "/search"
    assert (await client.get("/search", allow_redirects=False)).status == 200


@pytest.mark.parametrize("name, password", [("viewer", "wrong-password-1"), ("nobody", "viewer-password-1")])
async def test_login_failure(client, name, password):
    response = await log_in(client, name, password)
    assert response.status == 200
    assert SESSION_COOKIE not in response.cookies
    assert "用户名或密码错误" in await response.text()
    assert (await client.get("/search", allow_redirects=False)).status == 302


async def test_logged_in_user_skips_login_page(client):
    await log_in(client, "viewer")
    response = await client.get("/login?next=/search", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/search"


@pytest.mark.parametrize("language, texts", [
    ("zh-CN", ["<html lang=\"zh-CN\">", "登录", "用户名", "密码"]),
    ("en", ["<html lang=\"en\">", "Log in", "User name", "Password"]),
])
async def test_login_page_languages(client, language, texts):
    response = await client.get("/lang", params={"to": language, "next": "/login"})
    assert response.url.path == "/login"
    text = await response.text()
    for expected in texts:
        assert expected in text


async def test_lang_cookie(client):
    response = await client.get("/lang", params={"to": "en", "next": "/login?next=/search"},
                                allow_redirects=False)
    assert response.headers["Location"] == "/login?next=/search"
    cookie = response.cookies["lang"]
    assert cookie.value == "en"
    assert cookie["httponly"] is True
    response = await client.get("/lang", params={"to": "fr"}, allow_redirects=False)
    assert "lang" not in response.cookies


async def test_rate_limit_then_recovery(aiohttp_client, tmp_path, clock):
    limiter = LoginRateLimiter(max_failures_per_name=3, max_failures_per_address=10, window_s=300, clock=clock)
    client = await aiohttp_client(build_app(tmp_path, clock, limiter=limiter))
    for _ in range(3):
        assert (await log_in(client, "viewer", "wrong-password-1")).status == 200
    clock.advance(100)

    response = await log_in(client, "viewer")
    assert response.status == 429
    assert response.headers["Retry-After"] == "200"
    assert "请 200 秒后重试" in await response.text()
    assert SESSION_COOKIE not in response.cookies

    clock.advance(200)
    response = await log_in(client, "viewer")
    assert response.status == 303


async def test_rate_limit_message_in_english(aiohttp_client, tmp_path, clock):
    limiter = LoginRateLimiter(max_failures_per_name=1, window_s=60, clock=clock)
    client = await aiohttp_client(build_app(tmp_path, clock, limiter=limiter))
    client.session.cookie_jar.update_cookies({"lang": "en"})
    await log_in(client, "viewer", "wrong-password-1")
    response = await log_in(client, "viewer", "wrong-password-1")
    assert response.status == 429
    assert "Try again in 60 seconds." in await response.text()


async def test_session_expires_when_idle(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(build_app(tmp_path, clock, session_ttl_s=600))
    await log_in(client, "viewer")
    clock.advance(599)
    assert (await client.get("/search", allow_redirects=False)).status == 200
    clock.advance(599)
    assert (await client.get("/search", allow_redirects=False)).status == 200
    clock.advance(601)
    response = await client.get("/search", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login?next=/search"


async def test_logout_invalidates_session(client):
    await log_in(client, "viewer")
    token = client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE].value
    csrf_token = await page_csrf_token(client)
    response = await client.post("/logout", data={"csrf_token": csrf_token}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login"
    assert client.app[SESSION_STORE_KEY].lookup(token) is None
    # Replaying the old cookie must not bring the session back.
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: token})
    assert (await client.get("/search", allow_redirects=False)).status == 302


async def test_logout_needs_csrf(client):
    await log_in(client, "viewer")
    response = await client.post("/logout", data={})
    assert response.status == 403
    assert (await client.get("/search", allow_redirects=False)).status == 200


async def test_login_replaces_existing_session(client):
    await log_in(client, "viewer")
    old_token = client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE].value
    await log_in(client, "admin")
    assert client.app[SESSION_STORE_KEY].lookup(old_token) is None


async def test_disable_kills_live_session(aiohttp_client, tmp_path, clock):
    app = build_app(tmp_path, clock)
    admin = await aiohttp_client(app)
    viewer = await aiohttp_client(app)
    await log_in(admin, "admin")
    await log_in(viewer, "viewer")
    assert (await viewer.get("/search", allow_redirects=False)).status == 200

    viewer_id = next(user.id for user in app[USER_STORE_KEY].list_users() if user.name == "viewer")
    token = await page_csrf_token(admin)
    response = await admin.post(f"/users/{viewer_id}/disable", data={"csrf_token": token, "disabled": "1"},
                                allow_redirects=False)
    assert response.status == 303
    assert (await viewer.get("/search", allow_redirects=False)).status == 302
    assert (await log_in(viewer, "viewer")).status == 200, "a disabled user must not log in again"

    response = await admin.post(f"/users/{viewer_id}/disable", data={"csrf_token": token, "disabled": "0"},
                                allow_redirects=False)
    assert response.headers["Location"] == "/users?notice=enabled"
    assert (await log_in(viewer, "viewer")).status == 303


# --- Users pages -----------------------------------------------------------------------------------


async def admin_client(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(build_app(tmp_path, clock))
    await log_in(client, "admin")
    return client, await page_csrf_token(client)


async def test_users_page_lists_users(aiohttp_client, tmp_path, clock):
    client, _ = await admin_client(aiohttp_client, tmp_path, clock)
    text = await (await client.get("/users")).text()
    for name in PASSWORDS:
        assert f"<td>{name}</td>" in text


async def test_users_add_and_login(aiohttp_client, tmp_path, clock):
    client, token = await admin_client(aiohttp_client, tmp_path, clock)
    response = await client.post("/users", data={"csrf_token": token, "name": "Zhang.San",
                                                 "password": "zhang-password-1", "role": "investigator"})
    assert response.url.path == "/users"
    assert "已添加用户。" in await response.text()
    added = [user for user in client.app[USER_STORE_KEY].list_users() if user.name == "zhang.san"]
    assert [user.role for user in added] == ["investigator"]


@pytest.mark.parametrize("form, message", [
    ({"name": "x", "password": "long-enough-1", "role": "viewer"}, "用户名无效"),
    ({"name": "viewer", "password": "long-enough-1", "role": "viewer"}, "用户名 viewer 已被使用"),
    ({"name": "newuser", "password": "short", "role": "viewer"}, "至少需要 10 个字符"),
    ({"name": "newuser", "password": "long-enough-1", "role": "root"}, "角色无效"),
])
async def test_users_add_errors(aiohttp_client, tmp_path, clock, form, message):
    client, token = await admin_client(aiohttp_client, tmp_path, clock)
    response = await client.post("/users", data={"csrf_token": token, **form})
    assert response.status == 400
    assert message in await response.text()


async def test_last_admin_cannot_demote_self(aiohttp_client, tmp_path, clock):
    client, token = await admin_client(aiohttp_client, tmp_path, clock)
    admin_id = next(user.id for user in client.app[USER_STORE_KEY].list_users() if user.name == "admin")
    for path, data in ((f"/users/{admin_id}/role", {"role": "viewer"}),
                       (f"/users/{admin_id}/disable", {"disabled": "1"})):
        response = await client.post(path, data={"csrf_token": token, **data})
        assert response.status == 400
        assert "最后一个启用的管理员" in await response.text()
    assert (await client.get("/users", allow_redirects=False)).status == 200


async def test_users_role_and_password(aiohttp_client, tmp_path, clock):
    app = build_app(tmp_path, clock)
    client = await aiohttp_client(app)
    viewer = await aiohttp_client(app)
    await log_in(client, "admin")
    await log_in(viewer, "viewer")
    token = await page_csrf_token(client)
    viewer_id = next(user.id for user in app[USER_STORE_KEY].list_users() if user.name == "viewer")

    response = await client.post(f"/users/{viewer_id}/role", data={"csrf_token": token, "role": "investigator"},
                                 allow_redirects=False)
    assert response.headers["Location"] == "/users?notice=role"
    assert (await viewer.get("/export", allow_redirects=False)).status == 200

    response = await client.post(f"/users/{viewer_id}/password",
                                 data={"csrf_token": token, "password": "viewer-password-2"}, allow_redirects=False)
    assert response.headers["Location"] == "/users?notice=password"
    assert (await viewer.get("/search", allow_redirects=False)).status == 302
    assert (await log_in(viewer, "viewer", "viewer-password-1")).status == 200
    assert (await log_in(viewer, "viewer", "viewer-password-2")).status == 303


async def test_own_password_change_logs_out(aiohttp_client, tmp_path, clock):
    client, token = await admin_client(aiohttp_client, tmp_path, clock)
    admin_id = next(user.id for user in client.app[USER_STORE_KEY].list_users() if user.name == "admin")
    response = await client.post(f"/users/{admin_id}/password",
                                 data={"csrf_token": token, "password": "admin-password-2"}, allow_redirects=False)
    assert response.headers["Location"] == "/login?reason=password_changed"
    assert (await client.get("/users", allow_redirects=False)).status == 302


async def test_users_unknown_id(aiohttp_client, tmp_path, clock):
    client, token = await admin_client(aiohttp_client, tmp_path, clock)
    response = await client.post("/users/999/role", data={"csrf_token": token, "role": "viewer"})
    assert response.status == 400
    assert "未找到用户 999" in await response.text()


# --- Command line --------------------------------------------------------------------------------------


@pytest.fixture
def web_config(tmp_path):
    path = tmp_path / "web.toml"
    path.write_text('data_dir = "data"\n', encoding="utf-8")
    return path


def test_cli_add_user_with_password(web_config, capsys):
    assert add_user_command(web_config, "root", "admin", "root-password-1") == 0
    path = database_path(web_config.parent / "data")
    assert UserStore(path, FAST_SCRYPT).authenticate("root", "root-password-1").role == "admin"
    assert audit_actions(path)[0] == ("cli", "user_add", {"user_id": 1, "name": "root", "role": "admin"})
    assert "root-password-1" not in capsys.readouterr().out


def test_cli_generated_password_printed_once(web_config, capsys):
    assert add_user_command(web_config, "root", "admin", None, generate_password=True) == 0
    lines = capsys.readouterr().out.splitlines()
    password_lines = [line for line in lines if line.startswith("generated password")]
    assert len(password_lines) == 1
    password = password_lines[0].rsplit(" ", 1)[1]
    assert len(password) >= 20
    path = database_path(web_config.parent / "data")
    assert UserStore(path, FAST_SCRYPT).authenticate("root", password) is not None


@pytest.mark.parametrize("entries, expected_code, expected_error", [
    (["root-password-1", "root-password-1"], 0, ""),
    (["root-password-1", "root-password-2"], 1, "the two passwords differ"),
    (["short", "short"], 1, "at least 10 characters"),
    ([], 1, "no password entered"),
])
def test_cli_prompt(web_config, monkeypatch, capsys, entries, expected_code, expected_error):
    remaining = list(entries)

    def fake_getpass(prompt):
        if not remaining:
            raise EOFError
        return remaining.pop(0)

    monkeypatch.setattr("edge.web.cli_users.getpass.getpass", fake_getpass)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    assert add_user_command(web_config, "root", "admin", None) == expected_code
    assert expected_error in capsys.readouterr().err


def test_cli_prompt_needs_terminal(web_config, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert add_user_command(web_config, "root", "admin", None) == 1
    error = capsys.readouterr().err
    assert "--password-stdin" in error
    assert "--generate-password" in error


@pytest.mark.parametrize("name, role, error", [
    ("root", "owner", "unknown role 'owner'"),
    ("-root", "admin", "invalid user name"),
])
def test_cli_invalid_input(web_config, capsys, name, role, error):
    assert add_user_command(web_config, name, role, "root-password-1") == 1
    assert error in capsys.readouterr().err


def test_cli_invalid_config(tmp_path, capsys):
    path = tmp_path / "web.toml"
    path.write_text("session_ttl_s = 5\n", encoding="utf-8")
    assert add_user_command(path, "root", "admin", "root-password-1") == 2
    assert "session_ttl_s" in capsys.readouterr().err
    assert add_user_command(tmp_path / "missing.toml", "root", "admin", "root-password-1") == 2


# --- Why a user was logged out, and failed logins in the audit log --------------------------------------


@pytest.mark.parametrize("reason, shown", [
    ("expired", "您长时间未操作，已自动退出登录"),
    ("password_changed", "密码已修改，您的所有会话均已结束"),
    ("disabled", "管理员已停用您的账号"),
])
async def test_login_page_shows_logout_reason(client, reason, shown):
    text = await (await client.get("/login", params={"reason": reason})).text()
    assert 'id="logged-out"' in text
    assert shown in text


async def test_login_page_ignores_unknown_reason(client):
    text = await (await client.get("/login", params={"reason": "请致电 123 领取奖品"})).text()
    assert 'id="logged-out"' not in text
    assert "领取奖品" not in text


async def test_idle_expiry_explained_on_login_page(aiohttp_client, tmp_path, clock):
    client = await aiohttp_client(build_app(tmp_path, clock, session_ttl_s=600))
    await log_in(client, "viewer")
    clock.advance(601)

    response = await client.get("/search")

    assert response.url.path == "/login"
    assert "您长时间未操作，已自动退出登录" in await response.text()


@pytest.mark.parametrize("change, shown", [
    ("disable", "管理员已停用您的账号"),
    ("password", "密码已修改，您的所有会话均已结束"),
])
async def test_admin_change_explained_on_login_page(aiohttp_client, tmp_path, clock, change, shown):
    app = build_app(tmp_path, clock)
    admin = await aiohttp_client(app)
    viewer = await aiohttp_client(app)
    await log_in(admin, "admin")
    await log_in(viewer, "viewer")
    viewer_id = next(user.id for user in app[USER_STORE_KEY].list_users() if user.name == "viewer")
    form = {"csrf_token": await page_csrf_token(admin), "disabled": "1", "password": "viewer-password-2"}
    assert (await admin.post(f"/users/{viewer_id}/{change}", data=form, allow_redirects=False)).status == 303

    response = await viewer.get("/search")

    assert response.url.path == "/login"
    text = await response.text()
    assert shown in text
    assert "您长时间未操作" not in text


@pytest.mark.parametrize("typed, stored", [
    ("viewer", "viewer"),
    ("nobody", "nobody"),
    ("x" * 40, "x" * 32),
])
async def test_failed_login_audits_typed_name(client, typed, stored):
    await log_in(client, typed, "wrong-password-1")
    (record,) = client.app[AUDIT_LOG_KEY].query(1, 50, action="login_failed").records
    assert record.user == stored
    assert record.detail["name"] == typed


async def test_users_form_kept_after_error(aiohttp_client, tmp_path, clock):
    client, token = await admin_client(aiohttp_client, tmp_path, clock)
    response = await client.post("/users", data={"csrf_token": token, "name": "Bad Name!",
                                                 "password": "long-enough-password", "role": "investigator"})
    assert response.status == 400
    text = await response.text()
    assert 'value="Bad Name!"' in text
    assert '<option value="investigator" selected>' in text
    assert "long-enough-password" not in text
