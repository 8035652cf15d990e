"""Middlewares of edge.web.security: login required, role checks, CSRF, cookies and security headers."""

from __future__ import annotations

import pytest
from aiohttp import WSServerHandshakeError

from edge.web.security import CONTENT_SECURITY_POLICY, LOGIN_CSRF_COOKIE, SESSION_COOKIE, require_role, safe_next
from tests.web.auth_support import PASSWORDS, FakeClock, build_app, log_in, page_csrf_token

JSON_HEADERS = {"Accept": "application/json"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(aiohttp_client, tmp_path, clock):
    return await aiohttp_client(build_app(tmp_path, clock))


async def client_as(aiohttp_client, tmp_path, clock, role: str | None):
    client = await aiohttp_client(build_app(tmp_path, clock))
    if role is not None:
        response = await log_in(client, role)
        assert response.status == 303, f"login as {role} returned {response.status}"
    return client


# Expected status per role; None is a visitor without a session. Pages redirect visitors to /login (302).
ROLE_TABLE = [
    ("GET", "/", {None: 302, "viewer": 200, "investigator": 200, "admin": 200}),
    ("GET", "/search", {None: 302, "viewer": 200, "investigator": 200, "admin": 200}),
    ("GET", "/export", {None: 302, "viewer": 403, "investigator": 200, "admin": 200}),
    ("GET", "/watchlists", {None: 302, "viewer": 403, "investigator": 403, "admin": 200}),
    ("GET", "/users", {None: 302, "viewer": 403, "investigator": 403, "admin": 200}),
    ("GET", "/audit", {None: 302, "viewer": 403, "investigator": 403, "admin": 200}),
    ("POST", "/acknowledge", {None: 302, "viewer": 403, "investigator": 200, "admin": 200}),
    ("POST", "/users", {None: 302, "viewer": 403, "investigator": 403, "admin": 400}),
    ("POST", "/users/1/role", {None: 302, "viewer": 403, "investigator": 403, "admin": 400}),
    ("POST", "/users/1/password", {None: 302, "viewer": 403, "investigator": 403, "admin": 400}),
    ("POST", "/users/99/disable", {None: 302, "viewer": 403, "investigator": 403, "admin": 400}),
]


@pytest.mark.parametrize("role", [None, "viewer", "investigator", "admin"])
async def test_role_table(aiohttp_client, tmp_path, clock, role):
    """Each role against each guarded route; admin POSTs carry empty forms, so they fail validation (400)."""
    client = await client_as(aiohttp_client, tmp_path, clock, role)
    token = await page_csrf_token(client) if role else ""
    for method, path, expected in ROLE_TABLE:
        response = await client.request(method, path, data={"csrf_token": token} if method == "POST" else None,
                                        allow_redirects=False)
        assert response.status == expected[role], f"{role} {method} {path}"


async def test_forbidden_page_text(aiohttp_client, tmp_path, clock):
    client = await client_as(aiohttp_client, tmp_path, clock, "viewer")
    response = await client.get("/watchlists")
    assert response.status == 403
    text = await response.text()
    assert "或更高角色，您的角色是“查看员”" in text
    assert "请联系管理员" in text


async def test_forbidden_json_for_json_requests(aiohttp_client, tmp_path, clock):
    client = await client_as(aiohttp_client, tmp_path, clock, "viewer")
    response = await client.get("/watchlists", headers=JSON_HEADERS)
    assert response.status == 403
    assert (await response.json())["error"] == "error.forbidden"


def test_require_role_unknown_role():
    with pytest.raises(ValueError, match="unknown role 'owner'"):
        require_role("owner")


async def test_redirect_keeps_path_and_query(client):
    response = await client.get("/export?day=2026-12-04", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login?next=/export?day%3D2026-12-04"


async def test_redirected_login_returns_to_next(client):
    response = await client.get("/export?day=1")
    assert response.url.path == "/login"
    assert response.url.query["next"] == "/export?day=1"
    response = await log_in(client, "investigator", next_path=response.url.query["next"])
    assert response.headers["Location"] == "/export?day=1"


@pytest.mark.parametrize("headers", [
    JSON_HEADERS,
    {"X-Requested-With": "XMLHttpRequest"},
    {"Accept": "application/json, */*"},
])
async def test_anonymous_json_gets_401(client, headers):
    response = await client.get("/search", headers=headers, allow_redirects=False)
    assert response.status == 401
    assert (await response.json())["error"] == "auth.login_required"


async def test_anonymous_websocket_gets_401(client):
    with pytest.raises(WSServerHandshakeError) as raised:
        await client.ws_connect("/live/ws")
    assert raised.value.status == 401


async def test_websocket_after_login(aiohttp_client, tmp_path, clock):
    client = await client_as(aiohttp_client, tmp_path, clock, "viewer")
    socket = await client.ws_connect("/live/ws")
    assert await socket.receive_str(timeout=5) == "hello"
    await socket.close()


@pytest.mark.parametrize("path, expected", [
    ("/login", 200),
    ("/healthz", 200),
    ("/lang?to=en&next=/login", 303),
    ("/static/style.css", 200),
    ("/api/echo", 200),
])
async def test_public_paths_without_session(client, path, expected):
    response = await client.get(path, allow_redirects=False)
    assert response.status == expected


@pytest.mark.parametrize("path", [
    "/static/../watchlists",
    "/static/%2e%2e/watchlists",
    "/api%2F..%2Fwatchlists",
    "/api/../watchlists",
    "/login/../watchlists",
])
async def test_public_prefix_tricks_do_not_open_pages(client, path):
    """Dot segments and encoded slashes behind a public prefix must not reach a guarded page."""
    response = await client.get(path, allow_redirects=False)
    assert response.status in (302, 403, 404), f"{path} returned {response.status}"
    assert "data-csrf" not in await response.text()


@pytest.mark.parametrize("field, header, expected", [
    (None, None, 403),
    ("wrong-token", None, 403),
    (None, "wrong-token", 403),
    ("", None, 403),
    ("RIGHT", None, 200),
    (None, "RIGHT", 200),
])
async def test_csrf_check(aiohttp_client, tmp_path, clock, field, header, expected):
    client = await client_as(aiohttp_client, tmp_path, clock, "investigator")
    token = await page_csrf_token(client)
    data = {"hit": "7"}
    if field is not None:
        data["csrf_token"] = token if field == "RIGHT" else field
    headers = {}
    if header is not None:
        headers["X-CSRF-Token"] = token if header == "RIGHT" else header
    response = await client.post("/acknowledge", data=data, headers=headers)
    assert response.status == expected


async def test_csrf_page_text_in_both_languages(aiohttp_client, tmp_path, clock):
    client = await client_as(aiohttp_client, tmp_path, clock, "investigator")
    response = await client.post("/acknowledge", data={"csrf_token": "wrong"})
    assert "表单已过期或来源无效" in await response.text()
    client.session.cookie_jar.update_cookies({"lang": "en"})
    response = await client.post("/acknowledge", data={"csrf_token": "wrong"})
    assert response.status == 403
    assert "The form has expired or came from another site" in await response.text()


async def test_csrf_token_of_other_session_rejected(aiohttp_client, tmp_path, clock):
    app = build_app(tmp_path, clock)
    first = await aiohttp_client(app)
    second = await aiohttp_client(app)
    await log_in(first, "investigator")
    await log_in(second, "investigator")
    first_token = await page_csrf_token(first)
    response = await second.post("/acknowledge", data={"csrf_token": first_token})
    assert response.status == 403


async def test_csrf_not_checked_on_api(client):
    response = await client.post("/api/echo", json={"plate": "粤B12345"})
    assert response.status == 200


async def test_login_post_without_login_token(client):
    response = await client.post("/login", data={"name": "admin", "password": "admin-password-1"},
                                 allow_redirects=False)
    assert response.status == 403
    assert SESSION_COOKIE not in response.cookies


@pytest.mark.parametrize("secure", [False, True])
async def test_session_cookie_flags(aiohttp_client, tmp_path, clock, secure):
    client = await aiohttp_client(build_app(tmp_path, clock, secure_cookies=secure))
    login_page = await client.get("/login")
    login_cookie = login_page.cookies[LOGIN_CSRF_COOKIE]
    assert login_cookie["httponly"] is True
    assert login_cookie["samesite"] == "Strict"
    assert bool(login_cookie["secure"]) is secure
    # The test client's cookie jar keeps Secure cookies away from plain http, so the token is sent by hand.
    client.session.cookie_jar.update_cookies({LOGIN_CSRF_COOKIE: login_cookie.value})
    response = await client.post("/login", data={"name": "viewer", "password": PASSWORDS["viewer"],
                                                 "csrf_token": login_cookie.value}, allow_redirects=False)
    assert response.status == 303
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert bool(cookie["secure"]) is secure
    assert not cookie["max-age"], "the session cookie must end with the browser session"


@pytest.mark.parametrize("path, cacheable", [
    ("/login", False),
    ("/export", False),
    ("/no-such-page", False),
    ("/static/style.css", True),
])
async def test_security_headers(client, path, cacheable):
    response = await client.get(path, allow_redirects=False)
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert (response.headers.get("Cache-Control") == "no-store") is not cacheable


async def test_security_headers_on_json_401(client):
    response = await client.get("/search", headers=JSON_HEADERS)
    assert response.status == 401
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_policy_forbids_inline_scripts():
    directives = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("value, expected", [
    ("/search?plate=粤B", "/search?plate=粤B"),
    ("/hits/7", "/hits/7"),
    (None, "/"),
    ("", "/"),
    ("//evil.example", "/"),
    ("//evil.example/path", "/"),
    ("http://evil.example/", "/"),
    ("https://evil.example", "/"),
    ("javascript:alert(1)", "/"),
    ("/\\evil.example", "/"),
    ("\\\\evil.example", "/"),
    ("/\t/evil.example", "/"),
    ("/\n/evil.example", "/"),
    ("search", "/"),
    ("/" + "a" * 3000, "/"),
])
def test_safe_next(value, expected):
    assert safe_next(value) == expected


@pytest.mark.parametrize("target", ["//evil.example", "http://evil.example/x", "/\\evil.example"])
async def test_login_and_lang_never_redirect_off_site(client, target):
    response = await client.get("/lang", params={"to": "en", "next": target}, allow_redirects=False)
    assert response.headers["Location"] == "/"
    response = await log_in(client, "viewer", next_path=target)
    assert response.headers["Location"] == "/"
