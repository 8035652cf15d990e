"""The append-only audit log: storage, paging and filters, the rows each auth action writes, and the page."""

from __future__ import annotations

import re
import sqlite3

import pytest

from edge.web.audit import ACTIONS, AuditLog, database_path
from edge.web.security import AUDIT_LOG_KEY, USER_STORE_KEY
from tests.web.auth_support import PASSWORDS, FakeClock, build_app, log_in, page_csrf_token


@pytest.fixture
def db_path(tmp_path):
    return database_path(tmp_path)


@pytest.fixture
def audit_log(db_path) -> AuditLog:
    return AuditLog(db_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_record_and_query(audit_log):
    audit_log.record("alice", "search", "10.0.0.5", {"plate": "粤B12345", "hits": 2})
    page = audit_log.query()
    assert page.total == 1
    record = page.records[0]
    assert (record.user, record.action, record.client_address) == ("alice", "search", "10.0.0.5")
    assert record.detail == {"plate": "粤B12345", "hits": 2}
    assert record.at.endswith("+00:00")


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET user = 'mallory'",
    "UPDATE audit_events SET detail = '{}' WHERE id = 1",
    "DELETE FROM audit_events",
    "DELETE FROM audit_events WHERE id = 1",
])
def test_append_only(audit_log, db_path, statement):
    audit_log.record("alice", "search", "10.0.0.5", {"plate": "粤B12345"})
    with sqlite3.connect(db_path) as connection:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute(statement)
    assert audit_log.query().records[0].user == "alice"


def test_unknown_action_rejected(audit_log):
    with pytest.raises(ValueError, match="unknown audit action 'serach'"):
        audit_log.record("alice", "serach", None, {})
    assert audit_log.query().total == 0


@pytest.mark.parametrize("key", ["password", "new_password", "api_token", "Secret"])
def test_secret_detail_keys_rejected(audit_log, key):
    with pytest.raises(ValueError, match="look like secrets"):
        audit_log.record("alice", "user_password", None, {key: "x"})


def test_paging_newest_first(audit_log):
    for index in range(7):
        audit_log.record("alice", "search", None, {"index": index})
    first = audit_log.query(page=1, page_size=3)
    assert [record.detail["index"] for record in first.records] == [6, 5, 4]
    assert (first.total, first.pages, first.has_previous, first.has_next) == (7, 3, False, True)
    last = audit_log.query(page=3, page_size=3)
    assert [record.detail["index"] for record in last.records] == [0]
    assert (last.has_previous, last.has_next) == (True, False)
    beyond = audit_log.query(page=9, page_size=3)
    assert beyond.records == []
    assert beyond.total == 7


def test_filters(audit_log):
    audit_log.record("alice", "search", None, {})
    audit_log.record("alice", "export", None, {})
    audit_log.record("bob", "search", None, {})
    audit_log.record(None, "login_failed", None, {"name": "carol"})
    assert audit_log.query(user="alice").total == 2
    assert audit_log.query(action="search").total == 2
    assert audit_log.query(user="alice", action="search").total == 1
    # A failed login has no logged-in user, but filtering on the name it tried finds it.
    assert audit_log.query(user="carol").total == 1
    assert audit_log.query(user="carol", action="search").total == 0
    assert audit_log.query(action="login_failed").records[0].detail == {"name": "carol"}


def test_user_filter_matches_part_any_case(audit_log):
    audit_log.record("inv1", "search", None, {})
    audit_log.record("Inv2", "export", None, {})
    audit_log.record("admin", "search", None, {})
    audit_log.record("web_%x", "search", None, {})
    audit_log.record(None, "login_failed", None, {"name": "INVESTIGATOR"})

    assert [record.user for record in audit_log.query(user="INV").records] == [None, "Inv2", "inv1"]
    assert audit_log.query(user="nv1").total == 1
    assert audit_log.query(user="inv", action="export").total == 1
    # Wildcards of LIKE are plain characters in the filter.
    assert [record.user for record in audit_log.query(user="_%").records] == ["web_%x"]
    assert audit_log.query(user="%").total == 1
    assert audit_log.query(user="nobody").total == 0


@pytest.mark.parametrize("page, page_size", [(0, 10), (1, 0), (1, 201), ("1", 10), (True, 10)])
def test_query_bounds(audit_log, page, page_size):
    with pytest.raises(ValueError, match="audit page"):
        audit_log.query(page=page, page_size=page_size)


def test_shares_file_with_users(db_path):
    AuditLog(db_path)
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- Rows written by the web routes ----------------------------------------------------------------


async def test_rows_for_each_auth_action(aiohttp_client, tmp_path, clock):
    app = build_app(tmp_path, clock)
    client = await aiohttp_client(app)
    assert (await log_in(client, "admin", "wrong-password-9")).status == 200
    assert (await log_in(client, "admin")).status == 303
    token = await page_csrf_token(client)
    viewer_id = next(user.id for user in app[USER_STORE_KEY].list_users() if user.name == "viewer")

    await client.post("/users", data={"csrf_token": token, "name": "new.user", "password": "new-password-1",
                                      "role": "viewer"})
    await client.post(f"/users/{viewer_id}/role", data={"csrf_token": token, "role": "investigator"})
    await client.post(f"/users/{viewer_id}/password", data={"csrf_token": token, "password": "viewer-password-2"})
    await client.post(f"/users/{viewer_id}/disable", data={"csrf_token": token, "disabled": "1"})
    await client.get("/export")
    await client.post("/logout", data={"csrf_token": token})

    records = list(reversed(app[AUDIT_LOG_KEY].query(page_size=200).records))
    emitted = [record for record in records if record.user != "test-setup"]
    assert [record.action for record in emitted] == [
        "login_failed", "login", "user_add", "user_role", "user_password", "user_disable", "export", "logout",
    ]
    assert emitted[0].user == "admin"  # a failed login records the name as typed
    assert emitted[0].detail == {"name": "admin"}
    assert all(record.user == "admin" for record in emitted[1:])
    assert all(record.client_address == "127.0.0.1" for record in emitted)
    assert emitted[2].detail["name"] == "new.user"
    assert emitted[5].detail["disabled"] is True
    assert emitted[6].detail == {"rows": 3}


async def test_no_password_in_audit_rows(aiohttp_client, tmp_path, clock, db_path):
    client = await aiohttp_client(build_app(tmp_path, clock))
    await log_in(client, "admin", "wrong-password-9")
    await log_in(client, "admin")
    token = await page_csrf_token(client)
    await client.post("/users", data={"csrf_token": token, "name": "new.user", "password": "new-password-1",
                                      "role": "viewer"})
    with sqlite3.connect(db_path) as connection:
        text = " ".join(str(row) for row in connection.execute("SELECT * FROM audit_events"))
    for secret in ("wrong-password-9", PASSWORDS["admin"], "new-password-1"):
        assert secret not in text
    assert "csrf" not in text


async def test_throttled_logins_audited(aiohttp_client, tmp_path, clock):
    from edge.web.auth import LoginRateLimiter

    limiter = LoginRateLimiter(max_failures_per_name=2, clock=clock)
    app = build_app(tmp_path, clock, limiter=limiter)
    client = await aiohttp_client(app)
    for _ in range(4):
        await log_in(client, "viewer", "wrong-password-1")
    # The correct password during the block is throttled too, and recorded like the rest.
    await log_in(client, "viewer")
    records = app[AUDIT_LOG_KEY].query(action="login_failed").records
    assert len(records) == 5
    assert sum(1 for record in records if record.detail.get("throttled")) == 3


# --- Audit page ------------------------------------------------------------------------------------


async def admin_client(aiohttp_client, tmp_path, clock):
    app = build_app(tmp_path, clock)
    client = await aiohttp_client(app)
    await log_in(client, "admin")
    return client, app[AUDIT_LOG_KEY]


async def test_audit_page_shows_rows(aiohttp_client, tmp_path, clock):
    client, audit_log = await admin_client(aiohttp_client, tmp_path, clock)
    audit_log.record("alice", "search", "10.0.0.5", {"plate": "粤B12345"})
    text = await (await client.get("/audit")).text()
    assert '<td data-action="search">检索</td>' in text
    assert "粤B12345" in text, "details keep Chinese text readable"
    assert "10.0.0.5" in text


@pytest.mark.parametrize("language, shown", [
    ("zh-CN", "检索条件：车牌号=粤B12345，类型=全部布控命中，页码=2；结果数：2；unlisted：x"),
    ("en", "search: Plate=粤B12345, Type=All watchlist hits, Page=2; results: 2; unlisted: x"),
])
async def test_audit_detail_labelled_in_page_language(aiohttp_client, tmp_path, clock, language, shown):
    client, audit_log = await admin_client(aiohttp_client, tmp_path, clock)
    audit_log.record("alice", "search", None, {"query": {"type": "hits", "plate": "粤B12345", "page": "2"},
                                               "results": 2, "unlisted": "x"})
    client.session.cookie_jar.update_cookies({"lang": language})

    text = await (await client.get("/audit")).text()

    assert f"<code>{shown}</code>" in text


@pytest.mark.parametrize("detail, shown", [
    ({"topic": "hit.plate", "hit_id": 7}, "告警编号：7；类型：车牌布控命中"),
    ({"name": "bob", "role": "investigator", "old_role": "viewer"}, "名称：bob；原角色：查看员；角色：侦查员"),
    ({"name": "bob", "throttled": True}, "名称：bob；已限流：是"),
    ({"file_names": ["a.jpg", "b.jpg"]}, "文件名：a.jpg、b.jpg"),
    ({"topic": "det"}, "类型：det"),
])
async def test_audit_detail_values_in_words(aiohttp_client, tmp_path, clock, detail, shown):
    client, audit_log = await admin_client(aiohttp_client, tmp_path, clock)
    audit_log.record("alice", "view_hit", None, detail)

    text = await (await client.get("/audit")).text()

    assert f"<code>{shown}</code>" in text


def test_every_detail_field_has_a_label():
    from edge.web.i18n import Catalogues
    from edge.web.audit_format import AUDIT_DETAIL_FIELDS

    for language, messages in Catalogues.load().messages.items():
        missing = [field for field in AUDIT_DETAIL_FIELDS if f"audit.fields.{field}" not in messages]
        assert missing == [], f"{language} lacks labels for {missing}"


async def test_audit_page_filters(aiohttp_client, tmp_path, clock):
    client, audit_log = await admin_client(aiohttp_client, tmp_path, clock)
    audit_log.record("alice", "search", None, {})
    audit_log.record("bob", "export", None, {})
    text = await (await client.get("/audit", params={"user": "bob"})).text()
    assert re.findall(r'data-action="(\w+)"', text) == ["export"]
    text = await (await client.get("/audit", params={"user": "BO"})).text()
    assert re.findall(r'data-action="(\w+)"', text) == ["export"]
    text = await (await client.get("/audit", params={"action": "search"})).text()
    assert re.findall(r'data-action="(\w+)"', text) == ["search"]
    # An unknown action is ignored rather than matching nothing.
    text = await (await client.get("/audit", params={"action": "drop table", "user": "alice"})).text()
    assert re.findall(r'data-action="(\w+)"', text) == ["search"]


async def test_audit_page_paging(aiohttp_client, tmp_path, clock):
    client, audit_log = await admin_client(aiohttp_client, tmp_path, clock)
    for index in range(60):
        audit_log.record("alice", "search", None, {"index": index})
    text = await (await client.get("/audit", params={"user": "alice"})).text()
    assert text.count('data-action="search"') == 50
    assert 'href="/audit?page=2&amp;user=alice"' in text
    text = await (await client.get("/audit", params={"user": "alice", "page": "2"})).text()
    assert text.count('data-action="search"') == 10
    assert 'href="/audit?page=1&amp;user=alice"' in text
    response = await client.get("/audit", params={"page": "abc"})
    assert response.status == 200


@pytest.mark.parametrize("language, heading", [("zh-CN", "审计日志"), ("en", "Audit log")])
async def test_audit_page_languages(aiohttp_client, tmp_path, clock, language, heading):
    client, _ = await admin_client(aiohttp_client, tmp_path, clock)
    client.session.cookie_jar.update_cookies({"lang": language})
    text = await (await client.get("/audit")).text()
    assert f"<h1>{heading}</h1>" in text


def test_every_action_has_a_label():
    from edge.web.i18n import Catalogues

    catalogues = Catalogues.load()
    for language, messages in catalogues.messages.items():
        missing = [action for action in ACTIONS if f"audit.actions.{action}" not in messages]
        assert missing == [], f"{language} lacks labels for {missing}"


async def test_audit_page_past_end_redirects(aiohttp_client, tmp_path, clock):
    client, audit_log = await admin_client(aiohttp_client, tmp_path, clock)
    audit_log.record("alice", "search", None, {})
    response = await client.get("/audit", params={"page": "999", "user": "alice"}, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/audit?page=1&user=alice"
